// Package minillm finds or starts the one shared local mini-llm gateway of this user, and
// talks to it: Chat, Stream (server-sent events), Models, Health. Standard library only.
//
//	url, err := minillm.EnsureGateway(ctx, minillm.Options{})   // find it, or start it
//	client := minillm.NewClient(url)
//	reply, err := client.Chat(ctx, minillm.ChatRequest{
//		Model:    "mock/echo",
//		Messages: []minillm.Message{minillm.UserMessage("Hello")},
//	})
//
// EnsureGateway follows the protocol every mini-llm client follows (docs/LOCAL-GATEWAY.md in
// the repository): the state file gateway.json, an exclusive flock(2) on gateway.lock (the
// same lock Python's fcntl.flock takes, so Go, Python and Node callers racing start exactly
// one gateway), the /health identity check, and `python -m mini_llm serve --state-file ...`
// spawned in a session of its own when none runs. Starting one needs the mini-llm Python
// package; finding one needs nothing.
//
// Errors: *APIError (the gateway answered an error: Status, Body, Message, Type, Code),
// *ConnectionError (it could not be reached; Timeout says whether it did not answer in time),
// *StartError (it could not be started; Config when its configuration is invalid) and
// *VersionError (a gateway of another version runs and OnVersionMismatch is FailOnMismatch).
package minillm
