#ifndef IOT2MQTT_SERVICES_MQTT_BRIDGE_MQTT_BRIDGE_SERVICE_H_
#define IOT2MQTT_SERVICES_MQTT_BRIDGE_MQTT_BRIDGE_SERVICE_H_

// iot2mqtt.mqtt_bridge.v1.MqttBridgeService over a Bridge: the handlers
// translate, and keep blocking work off the gRPC threads (TestConnection's
// probe and config look-up run on the blocking pool; command completions
// and stream writes are handed to the event pool, never done on the MQTT
// network thread).

#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "iot2mqtt/mqtt_bridge/v1/mqtt_bridge_service.grpc.pb.h"
#include "services/common/work_pool.h"
#include "services/mqtt_bridge/bridge.h"

namespace iot2mqtt::mqtt_bridge {

struct ServiceOptions {
  // TestConnection gives up after this.
  absl::Duration probe_timeout = absl::Seconds(5);
};

class MqttBridgeServiceImpl final
    : public v1::MqttBridgeService::CallbackService {
 public:
  // None owned; all must outlive the service. `blocking` runs the probe and
  // config calls, `events` stream writes and command completions.
  MqttBridgeServiceImpl(Bridge& bridge, common::WorkPool& blocking,
                        common::WorkPool& events, ServiceOptions options = {});
  ~MqttBridgeServiceImpl() override;

  // Ends every Subscribe stream (UNAVAILABLE) and every waiting command;
  // streams opened afterwards end at once. For ServerOptions::before_shutdown.
  void Shutdown();

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::GetStatusResponse* response) override;
  grpc::ServerUnaryReactor* TestConnection(
      grpc::CallbackServerContext* context,
      const v1::TestConnectionRequest* request,
      v1::TestConnectionResponse* response) override;
  grpc::ServerUnaryReactor* ListTopics(
      grpc::CallbackServerContext* context,
      const v1::ListTopicsRequest* request,
      v1::ListTopicsResponse* response) override;
  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* context,
                                    const v1::PublishRequest* request,
                                    v1::PublishResponse* response) override;
  grpc::ServerWriteReactor<v1::TopicEvent>* Subscribe(
      grpc::CallbackServerContext* context,
      const v1::SubscribeRequest* request) override;
  grpc::ServerUnaryReactor* SendCommand(
      grpc::CallbackServerContext* context,
      const v1::SendCommandRequest* request,
      v1::SendCommandResponse* response) override;
  grpc::ServerUnaryReactor* GetInstanceDevices(
      grpc::CallbackServerContext* context,
      const v1::GetInstanceDevicesRequest* request,
      v1::GetInstanceDevicesResponse* response) override;
  grpc::ServerUnaryReactor* ListInstanceStates(
      grpc::CallbackServerContext* context,
      const v1::ListInstanceStatesRequest* request,
      v1::ListInstanceStatesResponse* response) override;
  grpc::ServerUnaryReactor* ClearInstanceTopics(
      grpc::CallbackServerContext* context,
      const v1::ClearInstanceTopicsRequest* request,
      v1::ClearResponse* response) override;
  grpc::ServerUnaryReactor* ClearAll(grpc::CallbackServerContext* context,
                                     const v1::ClearAllRequest* request,
                                     v1::ClearResponse* response) override;

 private:
  class SubscribeStream;
  friend class SubscribeStream;

  // False when shutting down (the stream must end at once).
  bool Register(SubscribeStream* stream);
  void Unregister(SubscribeStream* stream);

  Bridge& bridge_;
  common::WorkPool& blocking_;
  common::WorkPool& events_;
  const ServiceOptions options_;

  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::set<SubscribeStream*> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace iot2mqtt::mqtt_bridge

#endif  // IOT2MQTT_SERVICES_MQTT_BRIDGE_MQTT_BRIDGE_SERVICE_H_
