// Package failover sends Azure OpenAI requests to the first of a list of regions that can serve them, remembering
// which regions rest after 429s or failures and which lack a model, and falling back to the public OpenAI API.
//
// A Client is built from an ordered list of Regions (New) or from the environment and a .env file (NewFromEnv,
// NewFromEnvFile); a region is Azure's classic surface, its v1 surface (an endpoint ending in /openai/v1) or any
// OpenAI-compatible API (KindOpenAI). Its calls (ChatCompletion, CreateChatCompletion, CreateChatCompletionStream,
// CreateEmbeddings, the async and batch calls) take go-openai's types; when no region can serve a request, the
// error is an *ExhaustedError that says what each region answered or why it was passed over. The Client is also
// an http.RoundTripper (RoundTrip, and Do for SDKs that take a doer), for openai-go or any other SDK: there a
// failure is an HTTP answer, which AnswerError decides, as it does for the gateway (package gateway).
//
// # A request's path through the code
//
// A chat request goes through these files, in this order, and (without hedging) enters none twice:
//
//   - client.go: Client.CreateChatCompletion fills in the client's model and hands the request to go-openai, whose
//     HTTP client is the engine.
//   - failover.go: engine.Do builds a call (the request's body and model, from requestbody.go; its estimated
//     cost, from estimate.go) and runs it. call.run makes passes over the backends, in the order route.go gives
//     (the strategy, then quota steering); call.pass admits each backend in turn (call.admitNext), makes the
//     attempt (call.one, or call.race in race.go when hedging), and request.attempt (the part of a call its
//     attempts share) sends it and settles the region's state with the verdict (request.settle); call.report
//     tells the trace, the hook and the log (trace.go).
//   - roundtrip.go, for a request from another SDK: Client.RoundTrip hands it to engine.Do, and an error other
//     than the context's end to AnswerError (httperror.go) for an HTTP answer.
//   - exchange.go: request.try and request.exchange readdress the request to the backend (backend.go: its
//     surface, classic, v1 or OpenAI-compatible, says the address, and whether the body names the deployment) with its
//     credentials (entra.go for tokens), send it under the attempt timeout and read the answer: whole into a
//     pooled buffer (answer.go), or a stream up to its first content (stream.go, over sse.go's EventReader); an
//     error answer is scrubbed of secrets (scrub.go) and classified (classify.go, retryafter.go).
//
// # Where a region's state lives
//
// Everything a backend's answers taught (rests, half-open probes, missing models, quota meters, latencies) is in
// its health, declared and changed only in state.go under one mutex, with every state computed from timestamps:
// no goroutines, no timers. Its parts are small types with their own files: rest (rest.go), quota and meter
// (quota.go, meter.go), latencies (latency.go). Client.Health's snapshot of it is in health.go; sharing it with
// other replicas through a Store is in share.go and store.go.
//
// # Where to add a strategy
//
// An order of regions is a Strategy in route.go (byStrategy); a reason to wait or to skip a region is a state in
// state.go, asked by call.admitNext; a way to race attempts plugs into call.pass, as hedging does (hedge.go for
// the policy, race.go for the race); a new kind of answer is a verdict in classify.go.
//
// # Configuration
//
// Configuration goes in three steps: envscan.go scans the environment and a .env file into raw values;
// credentials.go builds regions and options from them (New takes them from Go values instead); validate.go
// checks them once and builds the backends, naming each wrong field through a fieldNamer as its source spells it
// (AZURE_OPENAI_ENDPOINT_2, regions[1].Endpoint), with the single-value checks in endpoint.go.
package failover
