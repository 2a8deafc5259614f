#include "services/config/config_service.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/util/time_util.h"
#include "iot2mqtt/sdk/instance_config.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "services/common/rpc_scope.h"
#include "services/config/secret_fields.h"

namespace iot2mqtt::config {
namespace {

// Fills the summary fields, which v1::DeviceConfigSummary and v1::DeviceConfig
// share.
template <typename Proto>
void ToProto(const DeviceConfigSummary& from, Proto* to) {
  to->set_mac_address(from.mac_address);
  if (from.device_name) to->set_device_name(*from.device_name);
  if (from.device_entity_id) to->set_device_entity_id(*from.device_entity_id);
  if (from.enable_ota) to->set_enable_ota(*from.enable_ota);
}

void ToProto(DeviceConfig from, v1::DeviceConfig* to) {
  ToProto(from.summary, to);
  to->set_content(std::move(from.content));
}

void ToProto(const MqttSettings& from, v1::MqttSettings* to) {
  to->set_host(from.host);
  to->set_port(from.port);
  to->set_username(from.username);
  to->set_password(from.password);
  to->set_base_topic(from.base_topic);
  to->set_client_prefix(from.client_prefix);
  to->set_qos(from.qos);
  to->set_retain(from.retain);
  to->set_keepalive(from.keepalive);
}

// Stores a JSON result in `field`.
absl::Status SetJson(absl::StatusOr<std::string> json, std::string* field) {
  if (!json.ok()) return json.status();
  *field = *std::move(json);
  return absl::OkStatus();
}

// The HTTP client's address as the gateway reports it, else the gRPC peer
// ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000").
bool ClientIsLoopback(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kClientAddressMetadata);
  std::string address;
  if (it != metadata.end()) {
    address = std::string(it->second.data(), it->second.size());
  } else {
    std::string peer_text = context.peer();
    absl::string_view peer = peer_text;
    if (absl::ConsumePrefix(&peer, "ipv4:")) {
      address = std::string(peer.substr(0, peer.rfind(':')));
    } else if (absl::ConsumePrefix(&peer, "ipv6:[")) {
      address = std::string(peer.substr(0, peer.find(']')));
    } else if (absl::StartsWith(peer, "unix:")) {
      return true;  // Same machine.
    }
  }
  absl::string_view host = address;
  absl::ConsumePrefix(&host, "::ffff:");
  return host == "::1" || absl::StartsWith(host, "127.");
}

// Streams the change log to one watcher: writes one event at a time, woken
// by the log's listener when it has caught up.
class ChangeWriter final : public grpc::ServerWriteReactor<v1::ChangeEvent> {
 public:
  ChangeWriter(ChangeLog& log, absl::string_view after) : log_(log) {
    ChangeLog::Start start = log_.StartAfter(after);
    position_ = start.position;
    pending_resync_ = start.resync;
    listener_ = log_.AddListener([this] { Next(); });
    Next();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok || finished_) {
        // The client went away, or cancelled while this write was out.
        FinishLocked(grpc::Status::CANCELLED);
        return;
      }
    }
    Next();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (!writing_) FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    log_.RemoveListener(listener_);
    delete this;
  }

 private:
  void FinishLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  void Next() {
    absl::MutexLock lock(&mu_);
    if (writing_ || finished_ || cancelled_) return;
    if (log_.closed()) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "the config service is shutting down"));
      return;
    }
    if (pending_resync_) {
      pending_resync_ = false;
      Change marker;
      marker.revision = position_;
      marker.time = absl::Now();
      marker.resync = true;
      event_ = ToProto(marker, log_);
    } else {
      std::vector<Change> changes = log_.Read(&position_, 1);
      if (changes.empty()) return;
      event_ = ToProto(changes.front(), log_);
    }
    writing_ = true;
    StartWrite(&event_);
  }

  ChangeLog& log_;
  int listener_ = 0;
  absl::Mutex mu_;
  uint64_t position_ ABSL_GUARDED_BY(mu_) = 0;
  bool pending_resync_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  v1::ChangeEvent event_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

v1::ChangeEvent ToProto(const Change& change, const ChangeLog& log) {
  v1::ChangeEvent event;
  event.set_cursor(log.CursorOf(change.revision));
  event.set_resync(change.resync);
  if (!change.resync) {
    switch (change.kind) {
      case Change::Kind::kInstance:
        event.set_kind(v1::ChangeEvent::INSTANCE);
        break;
      case Change::Kind::kSettings:
        event.set_kind(v1::ChangeEvent::SETTINGS);
        break;
      case Change::Kind::kDeviceConfig:
        event.set_kind(v1::ChangeEvent::DEVICE_CONFIG);
        break;
      case Change::Kind::kCatalogue:
        event.set_kind(v1::ChangeEvent::CATALOGUE);
        break;
      case Change::Kind::kDiscoveredDevice:
        event.set_kind(v1::ChangeEvent::DISCOVERED_DEVICE);
        break;
    }
    switch (change.action) {
      case Change::Action::kCreated:
        event.set_action(v1::ChangeEvent::CREATED);
        break;
      case Change::Action::kUpdated:
        event.set_action(v1::ChangeEvent::UPDATED);
        break;
      case Change::Action::kDeleted:
        event.set_action(v1::ChangeEvent::DELETED);
        break;
    }
  }
  event.set_connector(change.connector);
  event.set_instance_id(change.instance_id);
  event.set_mac_address(change.mac_address);
  event.set_settings(change.settings);
  event.set_device_id(change.device_id);
  *event.mutable_time() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
          absl::ToUnixNanos(change.time));
  return event;
}

void ConfigServiceImpl::Changed(Change::Kind kind, Change::Action action,
                                std::string connector, std::string instance_id,
                                std::string mac_address, std::string settings) {
  Change change;
  change.kind = kind;
  change.action = action;
  change.connector = std::move(connector);
  change.instance_id = std::move(instance_id);
  change.mac_address = std::move(mac_address);
  change.settings = std::move(settings);
  if (d_.changes_total != nullptr) {
    d_.changes_total
        ->Add({{"kind", KindName(kind)}, {"action", ActionName(action)}})
        .Increment();
  }
  d_.changes.Append(std::move(change));
}

void ConfigServiceImpl::DiscoveredDeviceChanged(Change::Action action,
                                                std::string device_id) {
  Change change;
  change.kind = Change::Kind::kDiscoveredDevice;
  change.action = action;
  change.device_id = std::move(device_id);
  if (d_.changes_total != nullptr) {
    d_.changes_total
        ->Add({{"kind", KindName(change.kind)}, {"action", ActionName(action)}})
        .Increment();
  }
  d_.changes.Append(std::move(change));
}

// --- Device configs -------------------------------------------------------

grpc::ServerUnaryReactor* ConfigServiceImpl::ListDeviceConfigs(
    grpc::CallbackServerContext* context,
    const v1::ListDeviceConfigsRequest* request,
    v1::ListDeviceConfigsResponse* response) {
  return Run(context, "ListDeviceConfigs", [this, response] {
    absl::StatusOr<std::vector<DeviceConfigSummary>> configs =
        d_.device_configs.List();
    if (configs.ok()) {
      for (const DeviceConfigSummary& config : *configs) {
        ToProto(config, response->add_configs());
      }
      response->set_count(response->configs_size());
    }
    return configs.status();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::GetDeviceConfig(
    grpc::CallbackServerContext* context,
    const v1::GetDeviceConfigRequest* request,
    v1::GetDeviceConfigResponse* response) {
  return Run(context, "GetDeviceConfig", [this, request, response] {
    absl::StatusOr<DeviceConfig> config =
        d_.device_configs.Get(request->mac_address());
    if (config.ok()) {
      ToProto(*std::move(config), response->mutable_device_config());
    }
    return config.status();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::UpdateDeviceConfig(
    grpc::CallbackServerContext* context,
    const v1::UpdateDeviceConfigRequest* request,
    v1::UpdateDeviceConfigResponse* response) {
  return Run(context, "UpdateDeviceConfig", [this, request, response] {
    absl::StatusOr<DeviceConfig> config =
        d_.device_configs.Put(request->mac_address(), request->content());
    if (config.ok()) {
      ToProto(*std::move(config), response->mutable_device_config());
      Changed(Change::Kind::kDeviceConfig, Change::Action::kUpdated, "", "",
              request->mac_address());
    }
    return config.status();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::DeleteDeviceConfig(
    grpc::CallbackServerContext* context,
    const v1::DeleteDeviceConfigRequest* request,
    v1::DeleteDeviceConfigResponse* response) {
  return Run(context, "DeleteDeviceConfig", [this, request] {
    absl::Status status = d_.device_configs.Delete(request->mac_address());
    if (status.ok()) {
      Changed(Change::Kind::kDeviceConfig, Change::Action::kDeleted, "", "",
              request->mac_address());
    }
    return status;
  });
}

// --- Auth and setup ---------------------------------------------------------

grpc::ServerUnaryReactor* ConfigServiceImpl::Login(
    grpc::CallbackServerContext* context, const v1::LoginRequest* request,
    v1::LoginResponse* response) {
  const bool loopback = ClientIsLoopback(*context);
  return Run(context, "Login", [this, request, response, loopback] {
    const bool had_key = d_.access_keys.HasKey();
    IOT2MQTT_ASSIGN_OR_RETURN(IssuedToken token,
                              d_.authenticator.Login(request->key(), loopback));
    response->set_token(token.token);
    response->set_token_type("bearer");
    response->set_expires_in(static_cast<int32_t>(token.expires_in_seconds));
    if (!had_key) {
      IOT2MQTT_LOG(WARNING) << "the access key was set by the first login "
                               "from this machine";
      Changed(Change::Kind::kSettings, Change::Action::kCreated, "", "", "",
              "access_key");
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::VerifyToken(
    grpc::CallbackServerContext* context, const v1::VerifyTokenRequest* request,
    v1::VerifyTokenResponse* response) {
  // HMAC only: cheap enough for the callback thread.
  common::RpcScope rpc(context, "VerifyToken");
  absl::StatusOr<VerifiedToken> verified = d_.tokens.Verify(request->token());
  if (verified.ok()) {
    response->set_subject(verified->subject);
    response->mutable_expires_at()->set_seconds(
        absl::ToUnixSeconds(verified->expires_at));
  }
  return rpc.Finish(verified.status());
}

grpc::ServerUnaryReactor* ConfigServiceImpl::GetSetupStatus(
    grpc::CallbackServerContext* context,
    const v1::GetSetupStatusRequest* request,
    v1::GetSetupStatusResponse* response) {
  return Run(context, "GetSetupStatus", [this, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(bool has_host, d_.mqtt.HasHost());
    response->set_has_access_key(d_.access_keys.HasKey());
    response->set_has_mqtt_config(has_host);
    response->set_setup_complete(response->has_access_key() &&
                                 response->has_mqtt_config());
    return absl::OkStatus();
  });
}

// --- Settings ---------------------------------------------------------------

grpc::ServerUnaryReactor* ConfigServiceImpl::GetMqttSettings(
    grpc::CallbackServerContext* context,
    const v1::GetMqttSettingsRequest* request,
    v1::GetMqttSettingsResponse* response) {
  return Run(context, "GetMqttSettings", [this, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(MqttSettings mqtt, d_.mqtt.Get());
    mqtt.password = mqtt.password.empty() ? "" : kSecretMask;
    ToProto(mqtt, response->mutable_settings());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::UpdateMqttSettings(
    grpc::CallbackServerContext* context,
    const v1::UpdateMqttSettingsRequest* request,
    v1::UpdateMqttSettingsResponse* response) {
  return Run(context, "UpdateMqttSettings", [this, request, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(
        MqttSettings desired,
        MqttSettingsStore::FromJson(
            request->settings().empty()
                ? absl::string_view("{}")
                : absl::string_view(request->settings())));
    IOT2MQTT_RETURN_IF_ERROR(d_.mqtt.Set(std::move(desired)).status());
    response->set_success(true);
    response->set_message("MQTT configuration saved");
    Changed(Change::Kind::kSettings, Change::Action::kUpdated, "", "", "",
            "mqtt");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::ResolveMqttSettings(
    grpc::CallbackServerContext* context,
    const v1::ResolveMqttSettingsRequest* request,
    v1::ResolveMqttSettingsResponse* response) {
  return Run(context, "ResolveMqttSettings", [this, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(MqttSettings mqtt, d_.mqtt.Get());
    ToProto(mqtt, response->mutable_settings());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::RotateSecretsKey(
    grpc::CallbackServerContext* context,
    const v1::RotateSecretsKeyRequest* request,
    v1::RotateSecretsKeyResponse* response) {
  return Run(context, "RotateSecretsKey", [this, response] {
    IOT2MQTT_RETURN_IF_ERROR(d_.vault.RotateKey());
    response->set_owners(static_cast<int32_t>(d_.vault.Owners().size()));
    IOT2MQTT_LOG(INFO).With("owners", response->owners())
        << "secrets key rotated";
    return absl::OkStatus();
  });
}

// --- Catalogue --------------------------------------------------------------

grpc::ServerUnaryReactor* ConfigServiceImpl::ListConnectors(
    grpc::CallbackServerContext* context,
    const v1::ListConnectorsRequest* request,
    v1::ListConnectorsResponse* response) {
  return Run(context, "ListConnectors", [this, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(auto ids, d_.instances.InstanceIdsByConnector());
    return SetJson(d_.catalogue.ListConnectorsJson(ids),
                   response->mutable_connectors());
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::ListAvailableConnectors(
    grpc::CallbackServerContext* context,
    const v1::ListAvailableConnectorsRequest* request,
    v1::ListAvailableConnectorsResponse* response) {
  return Run(context, "ListAvailableConnectors", [this, response] {
    return SetJson(d_.catalogue.ListAvailableJson(),
                   response->mutable_connectors());
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::GetConnectorSetup(
    grpc::CallbackServerContext* context,
    const v1::GetConnectorSetupRequest* request,
    v1::GetConnectorSetupResponse* response) {
  return Run(context, "GetConnectorSetup", [this, request, response] {
    return SetJson(d_.catalogue.GetSetupJson(request->name()),
                   response->mutable_setup());
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::ListIntegrations(
    grpc::CallbackServerContext* context,
    const v1::ListIntegrationsRequest* request,
    v1::ListIntegrationsResponse* response) {
  return Run(context, "ListIntegrations", [this, response] {
    return SetJson(d_.catalogue.ListIntegrationsJson(),
                   response->mutable_integrations());
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::GetIntegrationMeta(
    grpc::CallbackServerContext* context,
    const v1::GetIntegrationMetaRequest* request,
    v1::GetIntegrationMetaResponse* response) {
  return Run(context, "GetIntegrationMeta", [this, request, response] {
    return SetJson(d_.catalogue.GetMetaJson(request->name()),
                   response->mutable_meta());
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::GetIntegrationIcon(
    grpc::CallbackServerContext* context,
    const v1::GetIntegrationIconRequest* request, api::v1::HttpBody* response) {
  return Run(context, "GetIntegrationIcon", [this, request, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(Icon icon, d_.catalogue.GetIcon(request->name()));
    response->set_content_type(icon.content_type);
    response->set_data(std::move(icon.data));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::ValidateIntegrationConfig(
    grpc::CallbackServerContext* context,
    const v1::ValidateIntegrationConfigRequest* request,
    v1::ValidateIntegrationConfigResponse* response) {
  return Run(context, "ValidateIntegrationConfig", [this, request, response] {
    std::string body =
        request->config().empty()
            ? std::string("{}")
            : absl::StrCat("{\"config\":", request->config(), "}");
    return SetJson(d_.catalogue.ValidateConfigJson(request->name(), body),
                   response->mutable_result());
  });
}

// --- Instances --------------------------------------------------------------

grpc::ServerUnaryReactor* ConfigServiceImpl::ListInstances(
    grpc::CallbackServerContext* context,
    const v1::ListInstancesRequest* request,
    v1::ListInstancesResponse* response) {
  return Run(context, "ListInstances", [this, request, response] {
    std::optional<std::string> connector;
    if (!request->connector().empty()) connector = request->connector();
    return SetJson(d_.instances.ListInstancesJson(connector),
                   response->mutable_instances());
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::CreateInstance(
    grpc::CallbackServerContext* context,
    const v1::CreateInstanceRequest* request,
    v1::CreateInstanceResponse* response) {
  return Run(context, "CreateInstance", [this, request, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(InstanceChange change,
                              d_.instances.Create(request->instance()));
    response->set_result(change.response_json);
    Changed(Change::Kind::kInstance, Change::Action::kCreated, change.connector,
            change.instance_id);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::GetInstance(
    grpc::CallbackServerContext* context, const v1::GetInstanceRequest* request,
    v1::GetInstanceResponse* response) {
  return Run(context, "GetInstance", [this, request, response] {
    return SetJson(
        d_.instances.Get(request->connector(), request->instance_id()),
        response->mutable_instance());
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::UpdateInstance(
    grpc::CallbackServerContext* context,
    const v1::UpdateInstanceRequest* request,
    v1::UpdateInstanceResponse* response) {
  return Run(context, "UpdateInstance", [this, request, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(
        InstanceChange change,
        d_.instances.Update(request->connector(), request->instance_id(),
                            request->instance().empty()
                                ? absl::string_view("{}")
                                : absl::string_view(request->instance())));
    response->set_result(change.response_json);
    if (change.changed) {
      Changed(Change::Kind::kInstance, Change::Action::kUpdated,
              change.connector, change.instance_id);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::DeleteInstance(
    grpc::CallbackServerContext* context,
    const v1::DeleteInstanceRequest* request,
    v1::DeleteInstanceResponse* response) {
  return Run(context, "DeleteInstance", [this, request, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(
        InstanceChange change,
        d_.instances.Delete(request->connector(), request->instance_id()));
    response->set_result(change.response_json);
    Changed(Change::Kind::kInstance, Change::Action::kDeleted, change.connector,
            change.instance_id);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::ListConfiguredIntegrations(
    grpc::CallbackServerContext* context,
    const v1::ListConfiguredIntegrationsRequest* request,
    v1::ListConfiguredIntegrationsResponse* response) {
  return Run(context, "ListConfiguredIntegrations", [this, response] {
    return SetJson(d_.instances.ListConfiguredIntegrationsJson(),
                   response->mutable_integrations());
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::ListIntegrationInstances(
    grpc::CallbackServerContext* context,
    const v1::ListIntegrationInstancesRequest* request,
    v1::ListIntegrationInstancesResponse* response) {
  return Run(context, "ListIntegrationInstances", [this, request, response] {
    return SetJson(d_.instances.ListIntegrationInstancesJson(request->name()),
                   response->mutable_instances());
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::GetIntegrationInstance(
    grpc::CallbackServerContext* context,
    const v1::GetIntegrationInstanceRequest* request,
    v1::GetIntegrationInstanceResponse* response) {
  return Run(context, "GetIntegrationInstance", [this, request, response] {
    return SetJson(
        d_.instances.GetIntegrationInstanceJson(request->instance_id()),
        response->mutable_instance());
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::GetRuntimeConfig(
    grpc::CallbackServerContext* context,
    const v1::GetRuntimeConfigRequest* request,
    v1::GetRuntimeConfigResponse* response) {
  return Run(context, "GetRuntimeConfig", [this, request, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(
        std::string values, d_.instances.GetRuntimeSecretsValues(
                                request->connector(), request->instance_id()));
    IOT2MQTT_ASSIGN_OR_RETURN(
        std::string document,
        d_.instances.GetStoredJson(request->connector(),
                                   request->instance_id()));
    IOT2MQTT_ASSIGN_OR_RETURN(MqttSettings mqtt, d_.mqtt.Get());
    std::map<std::string, std::string> env;
    if (!mqtt.password.empty()) env[kMqttPasswordKey] = mqtt.password;
    response->set_secrets_file(BuildRuntimeSecretsJson(
        request->connector(), request->instance_id(), values, env));
    absl::StatusOr<sdk::ConfigObject> parsed =
        sdk::ConfigObject::Parse(document);
    response->set_enabled(parsed.ok() ? parsed->GetBool("enabled", true)
                                      : true);
    response->set_instance(std::move(document));
    return absl::OkStatus();
  });
}

// --- Discovered devices -----------------------------------------------------

grpc::ServerUnaryReactor* ConfigServiceImpl::ListDiscoveredDevices(
    grpc::CallbackServerContext* context,
    const v1::ListDiscoveredDevicesRequest* request,
    v1::ListDiscoveredDevicesResponse* response) {
  return Run(context, "ListDiscoveredDevices", [this, request, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(
        DiscoveredDeviceStore::Listing listing,
        d_.discovered_devices.List(request->integration()));
    for (DiscoveredDevice& device : listing.devices) {
      *response->add_devices() = std::move(device);
    }
    response->set_last_scan(std::move(listing.last_scan));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::RecordDiscoveredDevices(
    grpc::CallbackServerContext* context,
    const v1::RecordDiscoveredDevicesRequest* request,
    v1::RecordDiscoveredDevicesResponse* response) {
  return Run(context, "RecordDiscoveredDevices", [this, request, response] {
    const std::vector<DiscoveredDevice> reported(request->devices().begin(),
                                                 request->devices().end());
    IOT2MQTT_ASSIGN_OR_RETURN(
        DiscoveredDeviceStore::RecordResult result,
        d_.discovered_devices.Record(request->integration(), reported,
                                     request->scan_completed()));
    for (DiscoveredDevice& device : result.devices) {
      *response->add_devices() = std::move(device);
    }
    response->set_new_devices(result.new_devices);
    if (result.changed) {
      DiscoveredDeviceChanged(result.new_devices > 0 ? Change::Action::kCreated
                                                     : Change::Action::kUpdated,
                              result.single_device_id);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::MarkDiscoveredDeviceAdded(
    grpc::CallbackServerContext* context,
    const v1::MarkDiscoveredDeviceAddedRequest* request,
    v1::DiscoveredDevice* response) {
  return Run(context, "MarkDiscoveredDeviceAdded", [this, request, response] {
    IOT2MQTT_ASSIGN_OR_RETURN(
        *response, d_.discovered_devices.MarkAdded(request->device_id(),
                                                   request->instance_id()));
    DiscoveredDeviceChanged(Change::Action::kUpdated, request->device_id());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ConfigServiceImpl::DeleteDiscoveredDevice(
    grpc::CallbackServerContext* context,
    const v1::DeleteDiscoveredDeviceRequest* request,
    v1::DeleteDiscoveredDeviceResponse* response) {
  return Run(context, "DeleteDiscoveredDevice", [this, request] {
    IOT2MQTT_RETURN_IF_ERROR(
        d_.discovered_devices.Delete(request->device_id()));
    DiscoveredDeviceChanged(Change::Action::kDeleted, request->device_id());
    return absl::OkStatus();
  });
}

// --- Change events ----------------------------------------------------------

grpc::ServerWriteReactor<v1::ChangeEvent>* ConfigServiceImpl::WatchChanges(
    grpc::CallbackServerContext* context,
    const v1::WatchChangesRequest* request) {
  sdk::ScopedCorrelationId scope(common::CorrelationIdFrom(*context));
  IOT2MQTT_LOG(DEBUG).With("rpc", "WatchChanges") << "change watcher started";
  return new ChangeWriter(d_.changes, request->after());
}

common::HealthVerdict CheckConfigHealth(DeviceConfigStore& store) {
  StoreHealth health = store.CheckHealth();
  common::HealthVerdict verdict;
  verdict.healthy = health.healthy;
  verdict.reason = std::move(health.reason);
  verdict.details["device_configs_dir"] = health.directory;
  if (health.healthy) {
    verdict.details["device_configs_count"] =
        std::to_string(health.config_count);
  }
  return verdict;
}

}  // namespace iot2mqtt::config
