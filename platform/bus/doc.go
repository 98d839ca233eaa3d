// Package bus is Elph's event bus.
//
// Modules never import each other; they publish and consume events through a
// [Bus]. An [Event] has a topic named "<module>.<noun>.<verb>" (for example
// "chat.message.created"), an ordering key (a user, conversation or call id)
// and a JSON payload. Delivery is in order per key: events with the same key
// reach a subscription's handler one at a time, in the order they were
// published by a given publisher.
//
// There are two implementations with one contract. [Memory] is the
// single-node bus and the default. [NATS] carries the same events between
// the nodes of a cluster through a NATS server: every node's subscription
// gets every event, unless the subscription is [Shared], in which case the
// subscriptions of that name on all nodes share the events, each handled
// once in the cluster (a NATS queue group). Subjects use NATS syntax ('*'
// matches one token, '>' as the last token matches one or more) on both.
// Received NATS events go through the same per-subscription queues and
// workers as in-memory ones, so WithWorkers, WithQueueSize and WithPolicy
// mean the same; the difference is that a full Block subscriber cannot hold
// up a publisher on another node, so it loses the event after the publish
// timeout instead (counted and logged). Both export the same elph_bus_*
// metrics.
//
// Neither bus is durable: events still queued when a process dies, or
// published while a node is disconnected from NATS, are lost for that
// node. Work that must survive a restart (push queue, sync jobs) belongs in
// the database or in JetStream, with the bus only announcing it.
package bus
