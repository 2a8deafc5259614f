#ifndef IOT2MQTT_GATEWAY_PROTO_COMMENTS_H_
#define IOT2MQTT_GATEWAY_PROTO_COMMENTS_H_

// Leading comments of proto elements, for the API documentation. Generated
// C++ descriptors drop comments, so the build embeds a descriptor set with
// source info (gateway/CMakeLists.txt, api_descriptor_set.cc); elements it
// doesn't cover have no comment.

#include <string>

#include "google/protobuf/descriptor.h"

namespace iot2mqtt::gateway {

class ProtoComments {
 public:
  // The comments of the embedded descriptor set (built once).
  static const ProtoComments& Get();

  // The element's leading comment, trimmed; "" when there is none.
  std::string Of(const google::protobuf::ServiceDescriptor* service) const;
  std::string Of(const google::protobuf::MethodDescriptor* method) const;
  std::string Of(const google::protobuf::Descriptor* message) const;
  std::string Of(const google::protobuf::FieldDescriptor* field) const;
  std::string Of(const google::protobuf::EnumValueDescriptor* value) const;

 private:
  ProtoComments();
  google::protobuf::DescriptorPool pool_;
};

// The embedded FileDescriptorSet (serialized), generated at build time.
extern const unsigned char kApiDescriptorSet[];
extern const unsigned long kApiDescriptorSetSize;

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_PROTO_COMMENTS_H_
