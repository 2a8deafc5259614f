#ifndef IOT2MQTT_TESTS_SUPPORT_REFLECTION_CLIENT_H_
#define IOT2MQTT_TESTS_SUPPORT_REFLECTION_CLIENT_H_

// What `grpcurl -plaintext host:port list` and `grpcurl -d '{...}' host:port
// pkg.Service/Method` do, without any compiled-in knowledge of the service:
// the descriptors come from the server's reflection service
// (grpc.reflection.v1alpha, loaded at run time from Debian's grpc-proto).
// grpcurl itself is not packaged for Debian 12; this proves the same path.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor_database.h"
#include "google/protobuf/dynamic_message.h"
#include "grpcpp/channel.h"

namespace iot2mqtt::testing {

class ReflectionClient {
 public:
  // `target` like "127.0.0.1:50051". Fails when reflection.proto can't be
  // loaded from /usr/share/grpc-proto.
  static absl::StatusOr<std::unique_ptr<ReflectionClient>> Connect(
      const std::string& target);

  // Full names of the services the server lists.
  absl::StatusOr<std::vector<std::string>> ListServices();
  // Method full names of `service` ("pkg.Service.Method"), from descriptors
  // fetched over reflection.
  absl::StatusOr<std::vector<std::string>> ListMethods(
      const std::string& service);
  // Calls `service/method` with a JSON request; returns the JSON response
  // (proto field names). Non-OK gRPC status → the matching absl status.
  absl::StatusOr<std::string> Call(const std::string& service,
                                   const std::string& method,
                                   const std::string& json_request);

 private:
  ReflectionClient() = default;
  absl::Status LoadReflectionProto();
  // Sends one ServerReflectionRequest (given as JSON) and returns the
  // response as a dynamic message owned by the caller.
  absl::StatusOr<std::unique_ptr<google::protobuf::Message>> Ask(
      const std::string& json_request);
  absl::StatusOr<const google::protobuf::ServiceDescriptor*> FindService(
      const std::string& service);

  std::shared_ptr<grpc::Channel> channel_;
  // reflection.proto, parsed at run time.
  std::unique_ptr<google::protobuf::DescriptorPool> reflection_pool_;
  std::unique_ptr<google::protobuf::DynamicMessageFactory> reflection_factory_;
  // Descriptors received from the server.
  google::protobuf::SimpleDescriptorDatabase server_db_;
  std::unique_ptr<google::protobuf::DescriptorPool> server_pool_;
  std::unique_ptr<google::protobuf::DynamicMessageFactory> server_factory_;
};

}  // namespace iot2mqtt::testing

#endif  // IOT2MQTT_TESTS_SUPPORT_REFLECTION_CLIENT_H_
