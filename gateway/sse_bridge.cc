#include "gateway/sse_bridge.h"

#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gateway/backend_calls.h"
#include "gateway/http_status.h"
#include "gateway/transcoder.h"
#include "iot2mqtt/sdk/log.h"
#include "services/common/rpc_scope.h"
#include "services/common/status.h"

namespace iot2mqtt::gateway {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

constexpr size_t kMaxLastEventIdBytes = 128;
constexpr char kKeepaliveComment[] = ": keepalive\n\n";

// `data:` lines for `text` (a newline in it starts a new line: SSE joins
// them back with '\n').
void AppendData(absl::string_view text, std::string* frame) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    absl::StrAppend(frame, "data: ", line, "\n");
  }
}

bool IsSafeFieldValue(absl::string_view value) {
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

std::chrono::system_clock::time_point After(absl::Duration duration) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             absl::ToChronoNanoseconds(duration));
}

}  // namespace

std::string LastEventIdOf(const HttpRequest& request) {
  std::string id = request.Header("last-event-id");
  if (id.size() > kMaxLastEventIdBytes) return "";
  for (char c : id) {
    if (c < 0x20 || c > 0x7e) return "";
  }
  return id;
}

std::string SseEventFrame(const Message& message) {
  const google::protobuf::Descriptor* descriptor = message.GetDescriptor();
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::string frame;
  const FieldDescriptor* cursor = descriptor->FindFieldByName("cursor");
  if (cursor != nullptr && !cursor->is_repeated() &&
      cursor->type() == FieldDescriptor::TYPE_STRING) {
    std::string id = reflection->GetString(message, cursor);
    if (!id.empty() && IsSafeFieldValue(id)) {
      absl::StrAppend(&frame, "id: ", id, "\n");
    }
  }
  std::string event = "message";
  const FieldDescriptor* kind = descriptor->FindFieldByName("kind");
  if (kind != nullptr && !kind->is_repeated() &&
      kind->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
    const google::protobuf::EnumValueDescriptor* value =
        reflection->GetEnum(message, kind);
    if (value != nullptr && value->number() != 0) {
      event = absl::AsciiStrToLower(value->name());
    }
  }
  absl::StrAppend(&frame, "event: ", event, "\n");
  AppendData(MessageToJson(message), &frame);
  frame += "\n";
  return frame;
}

std::string SseErrorFrame(const HttpError& error,
                          absl::string_view correlation_id) {
  std::string frame = "event: error\n";
  AppendData(ErrorBody(error.status, correlation_id), &frame);
  frame += "\n";
  return frame;
}

std::shared_ptr<SseBridge> SseBridge::Start(
    SseCall call, std::shared_ptr<ResponseStream> stream, SseOptions options,
    DoneCallback on_done) {
  std::shared_ptr<SseBridge> bridge(new SseBridge(
      std::move(call), std::move(stream), options, std::move(on_done)));
  bridge->Begin();
  return bridge;
}

SseBridge::SseBridge(SseCall call, std::shared_ptr<ResponseStream> stream,
                     SseOptions options, DoneCallback on_done)
    : call_(std::move(call)),
      stream_(std::move(stream)),
      options_(options),
      on_done_(std::move(on_done)),
      prototype_(
          google::protobuf::MessageFactory::generated_factory()->GetPrototype(
              call_.response_type)) {}

SseBridge::~SseBridge() = default;

void SseBridge::Begin() {
  started_ = absl::Now();
  self_ = shared_from_this();
  if (call_.stub == nullptr || prototype_ == nullptr) {
    // A programming error (no stub, a type outside the generated pool): an
    // error event instead of a crash. Finished from a gRPC thread like a
    // real call, never inside Start.
    absl::MutexLock lock(&mu_);
    alarm_ = std::make_unique<grpc::Alarm>();
    alarm_->Set(After(absl::ZeroDuration()), [this](bool) {
      OnDone(grpc::Status(grpc::StatusCode::INTERNAL,
                          "the event stream is misconfigured"));
    });
    return;
  }
  context_.AddMetadata(common::kCorrelationIdMetadata, call_.correlation_id);
  if (call_.deadline != absl::InfiniteFuture()) {
    context_.set_deadline(absl::ToChronoTime(call_.deadline));
  }
  grpc::Slice slice(call_.request);
  request_ = grpc::ByteBuffer(&slice, 1);

  std::weak_ptr<SseBridge> weak = self_;
  // May run at once (the stream is closed already): Cancel before StartCall
  // is fine, the call then ends CANCELLED straight away.
  stream_->SetOnClose([weak] {
    if (std::shared_ptr<SseBridge> bridge = weak.lock()) bridge->Cancel();
  });
  Emit(absl::StrCat("retry: ", absl::ToInt64Milliseconds(options_.retry),
                    "\n\n"));
  {
    absl::MutexLock lock(&mu_);
    ArmKeepalive(options_.keepalive);
  }
  call_.stub->PrepareBidiStreamingCall(&context_, call_.rpc_path,
                                       grpc::StubOptions(), this);
  StartWriteLast(&request_, grpc::WriteOptions());
  StartRead(&response_);
  StartCall();
}

void SseBridge::Cancel() {
  cancelled_.store(true);
  context_.TryCancel();
}

bool SseBridge::Emit(std::string frame) {
  {
    absl::MutexLock lock(&mu_);
    last_frame_ = absl::Now();
  }
  // Not under mu_: a failing Write may run the stream's on_close (Cancel)
  // right here.
  if (stream_->Write(std::move(frame))) return true;
  Cancel();
  return false;
}

void SseBridge::ArmKeepalive(absl::Duration after) {
  if (done_) return;
  // A new alarm each time (replacing one inside its own callback is safe:
  // the callback holds its own reference).
  alarm_ = std::make_unique<grpc::Alarm>();
  std::weak_ptr<SseBridge> weak = weak_from_this();
  alarm_->Set(After(after), [weak](bool fired) {
    if (!fired) return;
    if (std::shared_ptr<SseBridge> bridge = weak.lock()) bridge->OnKeepalive();
  });
}

void SseBridge::OnKeepalive() {
  {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    absl::Duration idle = absl::Now() - last_frame_;
    if (idle < options_.keepalive) {
      ArmKeepalive(options_.keepalive - idle);
      return;
    }
    ArmKeepalive(options_.keepalive);
  }
  Emit(kKeepaliveComment);
}

void SseBridge::OnReadDone(bool ok) {
  if (!ok) return;  // The stream is over; OnDone follows.
  std::string bytes = BytesOf(response_);
  response_.Clear();
  std::unique_ptr<Message> message(prototype_->New());
  if (!message->ParseFromString(bytes)) {
    if (!error_sent_.exchange(true)) {
      Emit(SseErrorFrame(
          GatewayError(502, absl::StatusCode::kInternal,
                       absl::StrCat("the ", call_.backend,
                                    " service sent an unreadable event"),
                       "BAD_BACKEND_RESPONSE"),
          call_.correlation_id));
      stream_->End();
    }
    Cancel();
    return;  // No more reads: OnDone follows the cancellation.
  }
  events_.fetch_add(1);
  if (!Emit(SseEventFrame(*message))) return;  // Cancelled.
  StartRead(&response_);
}

void SseBridge::OnDone(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
    if (alarm_) alarm_->Cancel();
  }
  const bool cancelled = cancelled_.load();
  {
    sdk::ScopedCorrelationId scope(call_.correlation_id);
    const std::string code =
        common::CodeName(static_cast<absl::StatusCode>(status.error_code()));
    if (!status.ok() && !cancelled && status.error_details().empty()) {
      // Never reached the service, or the transport broke.
      IOT2MQTT_LOG(WARNING)
              .With("backend", call_.backend)
              .With("rpc", call_.rpc_path)
              .With("code", code)
              .With("error", status.error_message())
          << "backend stream failed";
    }
    IOT2MQTT_LOG(INFO)
            .With("rpc", call_.rpc_path)
            .With("code", cancelled ? std::string("CANCELLED") : code)
            .With("events", events_.load())
            .With("duration_ms",
                  absl::ToDoubleMilliseconds(absl::Now() - started_))
        << "event stream ended";
  }
  if (!status.ok() && !cancelled && !error_sent_.exchange(true)) {
    const bool expired =
        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
        call_.deadline != absl::InfiniteFuture() &&
        absl::Now() >= call_.deadline;
    Emit(SseErrorFrame(
        expired ? call_.deadline_error : BackendError(status, call_.backend),
        call_.correlation_id));
  }
  stream_->End();
  if (on_done_) on_done_(status);
  // Possibly the last reference: nothing after this.
  std::shared_ptr<SseBridge> self = std::move(self_);
}

}  // namespace iot2mqtt::gateway
