// Package stream is the per-user durable event stream and the one
// WebSocket per client session that delivers it.
//
// Every event a user must see (a chat message, a presence change, a call
// record…) is appended to that user's stream in the same transaction as
// the change it announces ([Stream.AppendTx]), under the next sequence
// number of that user: 1, 2, 3… with no gaps. A client remembers the last
// sequence it saw and, when it reconnects, gets everything after it, so
// nothing is lost across network changes, sleeps and server restarts. The
// package knows no business rules: chat, status, history and call control
// decide what to append; the stream stores, numbers and delivers.
//
// Ephemeral events (typing, presence pings) go through [Stream.Signal]
// instead: they reach the connections that are open at that moment and
// are neither stored nor numbered.
//
// With several nodes, every node runs a Stream on the shared database and
// bus. An append publishes the event on the bus topic "stream.appended"
// (key: the user id) after commit, so each node's connections of that
// user get it without reading the database; a node reads the database
// only when the notification it got is not the next sequence it expected.
//
// # WebSocket protocol (elph.v1)
//
// The client opens one WebSocket per session:
//
//	GET <mount>?since=<seq>
//
// where <mount> is where the module serving it mounts [Stream.Handler]
// (chat: /chat/v1/ws) and since is the last sequence the client has
// processed (0 or absent: it has nothing yet). The access token goes in
// one of, in order of preference:
//
//   - the header "Authorization: Bearer <token>";
//   - for browsers, which cannot set headers on a WebSocket, the
//     Sec-WebSocket-Protocol header as two subprotocols, "elph.v1" and
//     "bearer.<token>" (new WebSocket(url, ["elph.v1", "bearer." + token]));
//     the server selects "elph.v1" and never echoes the token;
//   - the query parameter access_token=<token>, as a last resort (it may
//     end up in proxy logs).
//
// Before the upgrade the server answers with a JSON error
// ({"error":{"code":"...","message":"..."}}) and no WebSocket: 401 for a
// missing, invalid or expired token or a revoked session, 400 for a bad
// since, 403 for a browser Origin that is neither the server's own host
// nor allowed by configuration (requests without an Origin header, from
// native clients, are accepted), 503 when the stream is not running.
//
// After the upgrade every message is one JSON object in a text frame.
// The server first sends
//
//	{"type":"hello","seq":<last>,"oldest":<oldest>}
//
// where last is the newest sequence of the user (0 when there is none yet)
// and oldest the lowest one the server still keeps (1 until retention has
// purged something). Then:
//
//   - when since < oldest-1 (the client missed events the server no longer
//     has) or since > last (the counter is not from this server), the
//     server sends {"type":"resync","seq":<last>}. The client reloads its
//     state over REST and continues from seq: either it keeps this
//     connection, which goes on with the events after seq, or it
//     reconnects with since=seq. A resync can also come later on an open
//     connection if retention overtakes a very slow client; it means the
//     same.
//   - otherwise the server sends every event after since, in order, and
//     then new events as they are appended.
//
// Events are
//
//	{"seq":N,"type":"chat.message.created","data":{...},"time":"2026-03-01T12:00:00.123456Z"}
//
// Each event arrives exactly once per connection and in sequence order,
// with no gaps: seq is always the previous event's seq + 1, the first one
// since + 1 (or the resync's seq + 1). Across connections a client may see
// an event again only if it reconnects with an older since than the last
// event it processed. Event types are dotted names
// ("<module>.<noun>.<verb>"); frame types without a dot ("hello",
// "resync", "signal", "pong") are protocol frames.
//
// Signals, which are not stored and carry no seq, are
//
//	{"type":"signal","signal":"typing","data":{...}}
//
// A client sends {"type":"ping"} to check the connection at the
// application level; the server answers each with {"type":"pong"} (a
// client with more than 8 pings unanswered gets fewer pongs). A frame whose
// type is dotted goes to the module owning its first token, with its
// "data" member ({"type":"status.watch","data":{...}}: the status module;
// see [Stream.Watch]). Other frame types from the client are ignored, so
// the protocol can grow. A text
// frame that is not a JSON object, or not UTF-8, is closed with 1007; a
// binary frame with 1003; a frame over 4096 bytes with 1009.
//
// The server sends WebSocket pings every 30 seconds; a client that does
// not answer one within 10 seconds is disconnected (WebSocket libraries
// answer pings by themselves as long as the application reads).
//
// Close codes the server uses, and what the client should do:
//
//	1001 going away      the server is shutting down: reconnect (another node or later) with since=<last seen>
//	1003, 1007, 1009     the client sent something invalid: fix the client
//	1011 internal error  reconnect with backoff
//	4001 session revoked the session was logged out or revoked: do not reconnect, log in again
//	4008 too slow        the client did not read fast enough and its queue on the server filled up:
//	                     reconnect with since=<last seen>; nothing is lost
//
// A connection also closes without a close frame when the network drops
// or a ping goes unanswered; the client reconnects with since=<last seen>
// and backoff. The same events are available over REST through
// [Stream.Since], which a module may expose for catch-up without a socket.
package stream
