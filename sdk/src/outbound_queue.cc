#include "iot2mqtt/sdk/outbound_queue.h"

#include <algorithm>
#include <utility>

namespace iot2mqtt::sdk {

OutboundQueue::List& OutboundQueue::ListOf(MessageClass cls) {
  switch (cls) {
    case MessageClass::kState:
      return state_;
    case MessageClass::kResponse:
      return response_;
    case MessageClass::kNormal:
      break;
  }
  return normal_;
}

void OutboundQueue::Remove(List& list, List::iterator it) {
  if (it->item.cls == MessageClass::kState && it->item.message.retain) {
    auto found = retained_state_.find(it->item.message.topic);
    if (found != retained_state_.end() && found->second == it) {
      retained_state_.erase(found);
    }
  }
  bytes_ -= Cost(it->item.message);
  --count_;
  list.erase(it);
}

void OutboundQueue::Insert(OutboundMessage item, bool front) {
  const bool coalesce = item.cls == MessageClass::kState && item.message.retain;
  if (coalesce) {
    auto found = retained_state_.find(item.message.topic);
    if (found != retained_state_.end()) {
      if (front) return;  // A newer value of the topic is already queued.
      Remove(state_, found->second);
    }
  }
  List& list = ListOf(item.cls);
  bytes_ += Cost(item.message);
  ++count_;
  List::iterator it;
  if (front) {
    it = list.insert(list.begin(), Entry{next_front_--, std::move(item)});
  } else {
    it = list.insert(list.end(), Entry{next_back_++, std::move(item)});
  }
  if (coalesce) retained_state_[it->item.message.topic] = it;
}

void OutboundQueue::Enforce(std::vector<OutboundMessage>* dropped) {
  while (count_ > limits_.max_messages || bytes_ > limits_.max_bytes) {
    List* victim = !state_.empty()    ? &state_
                   : !normal_.empty() ? &normal_
                                      : &response_;
    if (victim->empty()) break;
    if (dropped != nullptr) dropped->push_back(victim->front().item);
    Remove(*victim, victim->begin());
  }
}

void OutboundQueue::Push(MqttMessage message, MessageClass cls,
                         std::vector<OutboundMessage>* dropped) {
  Insert(OutboundMessage{std::move(message), cls}, /*front=*/false);
  Enforce(dropped);
}

void OutboundQueue::PushFront(std::vector<OutboundMessage> messages,
                              std::vector<OutboundMessage>* dropped) {
  for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
    Insert(std::move(*it), /*front=*/true);
  }
  Enforce(dropped);
}

std::vector<OutboundMessage> OutboundQueue::TakeAll() {
  std::vector<Entry> all;
  all.reserve(count_);
  for (List* list : {&state_, &normal_, &response_}) {
    for (Entry& entry : *list) all.push_back(std::move(entry));
    list->clear();
  }
  std::sort(all.begin(), all.end(),
            [](const Entry& a, const Entry& b) { return a.seq < b.seq; });
  std::vector<OutboundMessage> out;
  out.reserve(all.size());
  for (Entry& entry : all) out.push_back(std::move(entry.item));
  retained_state_.clear();
  count_ = 0;
  bytes_ = 0;
  next_back_ = 0;
  next_front_ = -1;
  return out;
}

}  // namespace iot2mqtt::sdk
