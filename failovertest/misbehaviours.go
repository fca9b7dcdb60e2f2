package failovertest

import "time"

// Misbehaviour is one way a region misbehaves, as the independent failover benchmarks play them against a
// gateway: Play scripts a Server with it, and a request (streamed when Stream is set) then meets it. Tests of
// a failover layer play each against the first region of two and check what the caller got.
type Misbehaviour struct {
	Name   string
	Stream bool          // played on a streaming chat request
	Play   func(*Server) // scripts the server's next answer (or, for good, its default one)
}

// Misbehaviours returns the benchmarks' misbehaviours, with the slow-but-healthy cases a failover layer must not
// mistake for them: a region that never answers and one that answers in 90 s look alike for 90 s.
func Misbehaviours() []Misbehaviour {
	next := func(r Reply) func(*Server) { return func(s *Server) { s.Script(r) } }
	return []Misbehaviour{
		{Name: "429 with Retry-After", Play: next(RateLimited(20 * time.Second))},
		{Name: "429 without Retry-After", Play: next(RateLimited(0))},
		{Name: "500 once", Play: next(InternalError())},
		{Name: "503 for good", Play: func(s *Server) { s.SetDefault(Unavailable()) }},
		{Name: "connection reset", Play: next(Disconnect())},
		{Name: "no answer", Play: next(Hang())},
		{Name: "no answer, stream", Stream: true, Play: next(Hang())},
		{Name: "slow reasoning model (90 s)", Play: next(Reply{Delay: 90 * time.Second})},
		{Name: "slow first token (20 s), stream", Stream: true, Play: next(Reply{BodyDelay: 20 * time.Second})},
		{Name: "error before content, stream", Stream: true, Play: next(StreamFailure(1))},
		{Name: "cut after content, stream", Stream: true, Play: next(Reply{StreamCutAfter: 2})},
		{Name: "stalled after content, stream", Stream: true, Play: next(Reply{StreamStallAfter: 2})},
		{Name: "malformed chunk before content, stream", Stream: true, Play: next(Reply{StreamMalformedAt: 1})},
		{Name: "malformed chunk after content, stream", Stream: true, Play: next(Reply{StreamMalformedAt: 3})},
		{Name: "no [DONE], stream", Stream: true, Play: next(Reply{NoDone: true})},
		{Name: "content filter (400)", Play: next(ContentFilter())},
		{Name: "context length exceeded (400)", Play: next(ContextLengthExceeded())},
	}
}

// Outage plays a primary region that is down for a minute and then recovers, as the failover benchmarks' flapping
// primary does: s answers 503 for 60 s of the clock and then serves, while send makes one request through the
// failover layer under test every 2 s and returns the text it got. Outage returns how long after the recovery s
// served a request again (recovered is false when it did not, in 60 requests), or send's first error. It is for
// a testing/synctest bubble, where the two minutes it may take are fake. On return s serves.
func Outage(s *Server, send func() (string, error)) (back time.Duration, recovered bool, err error) {
	s.SetDefault(Unavailable())
	start := time.Now()
	for range 60 {
		if time.Since(start) >= time.Minute {
			s.SetDefault(Reply{})
		}
		text, err := send()
		if err != nil {
			return 0, false, err
		}
		if text == "Hello from "+s.Name+"." {
			return time.Since(start) - time.Minute, true, nil
		}
		time.Sleep(2 * time.Second) // the next caller
	}
	s.SetDefault(Reply{})
	return 0, false, nil
}
