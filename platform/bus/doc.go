// Package bus is Elph's in-process event bus.
//
// Modules never import each other; they publish and consume events through a
// [Bus]. An [Event] has a topic named "<module>.<noun>.<verb>" (for example
// "chat.message.created"), an ordering key (a user, conversation or call id)
// and a JSON payload. Delivery is in order per key: events with the same key
// reach a subscription's handler one at a time, in the order they were
// published by a given publisher.
//
// [Memory] is the single-node implementation and the default. Subjects use
// NATS syntax ('*' matches one token, '>' as the last token matches one or
// more) so that a NATS-backed implementation can satisfy the same interface
// when several nodes run together.
//
// The in-memory bus is not durable: events still queued when the process
// dies are lost. Work that must survive a restart (push queue, sync jobs)
// belongs in the database or in JetStream, with the bus only announcing it.
package bus
