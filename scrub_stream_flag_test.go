package failover_test

// multiLineEventsScrubbed is set once stream.go scrubs an event's data lines together.
const multiLineEventsScrubbed = false
