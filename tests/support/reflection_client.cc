#include "tests/support/reflection_client.h"

#include <future>

#include "absl/strings/str_cat.h"
#include "google/protobuf/compiler/importer.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "services/common/grpc_status.h"

namespace iot2mqtt::testing {
namespace {

namespace pb = google::protobuf;

constexpr char kReflectionMethod[] =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
constexpr char kGrpcProtoDir[] = "/usr/share/grpc-proto";

class SilentErrors : public pb::compiler::MultiFileErrorCollector {
 public:
  void AddError(const std::string& file, int line, int column,
                const std::string& message) override {
    errors += absl::StrCat(file, ":", line, ":", column, ": ", message, "\n");
  }
  std::string errors;
};

grpc::ByteBuffer ToByteBuffer(const pb::Message& message) {
  std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

bool FromByteBuffer(const grpc::ByteBuffer& buffer, pb::Message* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return false;
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return message->ParseFromString(bytes);
}

// Waits for the completion of `tag` on `cq`.
bool Await(grpc::CompletionQueue* cq, void* tag) {
  void* got = nullptr;
  bool ok = false;
  if (!cq->Next(&got, &ok)) return false;
  return ok && got == tag;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ReflectionClient>> ReflectionClient::Connect(
    const std::string& target) {
  std::unique_ptr<ReflectionClient> client(new ReflectionClient());
  client->channel_ =
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  if (absl::Status s = client->LoadReflectionProto(); !s.ok()) return s;
  return client;
}

absl::Status ReflectionClient::LoadReflectionProto() {
  static pb::compiler::DiskSourceTree* tree = [] {
    auto* t = new pb::compiler::DiskSourceTree();
    t->MapPath("", kGrpcProtoDir);
    return t;
  }();
  SilentErrors errors;
  auto importer = std::make_unique<pb::compiler::Importer>(tree, &errors);
  const pb::FileDescriptor* file =
      importer->Import("grpc/reflection/v1alpha/reflection.proto");
  if (file == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load reflection.proto from ", kGrpcProtoDir, ": ",
                     errors.errors));
  }
  pb::FileDescriptorProto proto;
  file->CopyTo(&proto);
  reflection_pool_ = std::make_unique<pb::DescriptorPool>();
  if (reflection_pool_->BuildFile(proto) == nullptr) {
    return absl::InternalError("cannot build reflection.proto");
  }
  reflection_factory_ =
      std::make_unique<pb::DynamicMessageFactory>(reflection_pool_.get());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<pb::Message>> ReflectionClient::Ask(
    const std::string& json_request) {
  const pb::Descriptor* req_type = reflection_pool_->FindMessageTypeByName(
      "grpc.reflection.v1alpha.ServerReflectionRequest");
  const pb::Descriptor* resp_type = reflection_pool_->FindMessageTypeByName(
      "grpc.reflection.v1alpha.ServerReflectionResponse");
  std::unique_ptr<pb::Message> request(
      reflection_factory_->GetPrototype(req_type)->New());
  if (auto s = pb::util::JsonStringToMessage(json_request, request.get());
      !s.ok()) {
    return absl::InvalidArgumentError(s.ToString());
  }
  grpc::GenericStub stub(channel_);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  int start_tag = 1, write_tag = 2, read_tag = 3, done_tag = 4, finish_tag = 5;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, kReflectionMethod, &cq);
  call->StartCall(&start_tag);
  std::unique_ptr<pb::Message> response(
      reflection_factory_->GetPrototype(resp_type)->New());
  bool ok = Await(&cq, &start_tag);
  grpc::ByteBuffer out = ToByteBuffer(*request);
  if (ok) {
    call->Write(out, &write_tag);
    ok = Await(&cq, &write_tag);
  }
  grpc::ByteBuffer in;
  bool got = false;
  if (ok) {
    call->Read(&in, &read_tag);
    got = Await(&cq, &read_tag);
  }
  call->WritesDone(&done_tag);
  Await(&cq, &done_tag);
  grpc::Status status;
  call->Finish(&status, &finish_tag);
  Await(&cq, &finish_tag);
  cq.Shutdown();
  void* tag;
  bool ignored;
  while (cq.Next(&tag, &ignored)) {
  }
  if (!status.ok()) return common::ToAbslStatus(status);
  if (!got || !FromByteBuffer(in, response.get())) {
    return absl::UnavailableError("no reflection response");
  }
  return response;
}

absl::StatusOr<std::vector<std::string>> ReflectionClient::ListServices() {
  auto response = Ask(R"({"list_services": ""})");
  if (!response.ok()) return response.status();
  std::string json;
  pb::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)pb::util::MessageToJsonString(**response, &json, options);
  const pb::Reflection* r = (*response)->GetReflection();
  const pb::FieldDescriptor* list_field =
      (*response)->GetDescriptor()->FindFieldByName("list_services_response");
  if (!r->HasField(**response, list_field)) {
    return absl::InternalError(
        absl::StrCat("unexpected reflection answer: ", json));
  }
  const pb::Message& list = r->GetMessage(**response, list_field);
  const pb::FieldDescriptor* service_field =
      list.GetDescriptor()->FindFieldByName("service");
  std::vector<std::string> names;
  for (int i = 0; i < list.GetReflection()->FieldSize(list, service_field);
       ++i) {
    const pb::Message& service =
        list.GetReflection()->GetRepeatedMessage(list, service_field, i);
    names.push_back(service.GetReflection()->GetString(
        service, service.GetDescriptor()->FindFieldByName("name")));
  }
  return names;
}

absl::StatusOr<const pb::ServiceDescriptor*> ReflectionClient::FindService(
    const std::string& service) {
  auto response =
      Ask(absl::StrCat(R"({"file_containing_symbol": ")", service, R"("})"));
  if (!response.ok()) return response.status();
  const pb::Reflection* r = (*response)->GetReflection();
  const pb::FieldDescriptor* fd_field =
      (*response)->GetDescriptor()->FindFieldByName("file_descriptor_response");
  if (!r->HasField(**response, fd_field)) {
    return absl::NotFoundError(absl::StrCat("server does not know ", service));
  }
  const pb::Message& files = r->GetMessage(**response, fd_field);
  const pb::FieldDescriptor* protos =
      files.GetDescriptor()->FindFieldByName("file_descriptor_proto");
  for (int i = 0; i < files.GetReflection()->FieldSize(files, protos); ++i) {
    pb::FileDescriptorProto file;
    if (!file.ParseFromString(
            files.GetReflection()->GetRepeatedString(files, protos, i))) {
      return absl::DataLossError("bad FileDescriptorProto from server");
    }
    server_db_.Add(file);  // Duplicates of an identical file are accepted.
  }
  server_pool_ = std::make_unique<pb::DescriptorPool>(&server_db_);
  server_factory_ =
      std::make_unique<pb::DynamicMessageFactory>(server_pool_.get());
  const pb::ServiceDescriptor* descriptor =
      server_pool_->FindServiceByName(service);
  if (descriptor == nullptr) {
    return absl::NotFoundError(absl::StrCat("no descriptor for ", service));
  }
  return descriptor;
}

absl::StatusOr<std::vector<std::string>> ReflectionClient::ListMethods(
    const std::string& service) {
  auto descriptor = FindService(service);
  if (!descriptor.ok()) return descriptor.status();
  std::vector<std::string> methods;
  for (int i = 0; i < (*descriptor)->method_count(); ++i) {
    methods.push_back((*descriptor)->method(i)->full_name());
  }
  return methods;
}

absl::StatusOr<std::string> ReflectionClient::Call(
    const std::string& service, const std::string& method,
    const std::string& json_request) {
  auto descriptor = FindService(service);
  if (!descriptor.ok()) return descriptor.status();
  const pb::MethodDescriptor* m = (*descriptor)->FindMethodByName(method);
  if (m == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(service, " has no method ", method));
  }
  std::unique_ptr<pb::Message> request(
      server_factory_->GetPrototype(m->input_type())->New());
  if (auto s = pb::util::JsonStringToMessage(json_request, request.get());
      !s.ok()) {
    return absl::InvalidArgumentError(s.ToString());
  }
  grpc::GenericStub stub(channel_);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  grpc::ByteBuffer out = ToByteBuffer(*request);
  grpc::ByteBuffer in;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, absl::StrCat("/", service, "/", method),
                 grpc::StubOptions(), &out, &in,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status status = done.get_future().get();
  if (!status.ok()) return common::ToAbslStatus(status);
  std::unique_ptr<pb::Message> response(
      server_factory_->GetPrototype(m->output_type())->New());
  if (!FromByteBuffer(in, response.get())) {
    return absl::DataLossError("cannot parse response");
  }
  std::string json;
  pb::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (auto s = pb::util::MessageToJsonString(*response, &json, options);
      !s.ok()) {
    return absl::InternalError(s.ToString());
  }
  return json;
}

}  // namespace iot2mqtt::testing
