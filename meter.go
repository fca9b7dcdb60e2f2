package failover

import (
	"sort"
	"time"
)

// quotaWindow is the span Azure OpenAI's rate limits are set over: requests and tokens per minute. What a
// request took comes back to the deployment once the request is that old, and news older than it says nothing
// any more.
const quotaWindow = time.Minute

// maxSendLog bounds the sends a meter remembers; a deployment taking more than this a minute from one client
// has its recovery counted short, which only makes the client more careful with it.
const maxSendLog = 4096

// meter follows one of a deployment's two limits (requests or tokens per minute) as a minute that slides: what
// the last answer said was left when its request arrived, less what this client has sent since, plus what this
// client sent in the minute before that request, as it leaves the minute. Other clients' sends show in the
// answers; their recovery does not, which errs on the side of room kept free.
type meter struct {
	known  bool      // an answer has said what is left, and what the limit is
	limit  float64   // the per-minute limit: x-ratelimit-limit-*, else the most an answer showed was free
	left   float64   // what the last answer said was left
	mark   float64   // the answered request's mark: what this client had sent up to and including it
	sentAt time.Time // when the answered request was sent: the answer's count is as of then
	sent   float64   // all this client has charged to the meter, ever
	log    []sendMark
	floor  float64 // the mark before the log's first send
	// surprise is a moving average of how much less an answer said was left than the meter expected: what
	// other clients took that this one could not see coming. Room is kept for it.
	surprise float64
	// After a 429, the deployment's Retry-After said promised would be free at promisedAt, less what this client
	// sent after promisedMark.
	promised, promisedMark float64
	promisedAt             time.Time
	// uncounted are sends the deployment never counted (refused with a 429, or never sent), by when they were
	// sent: they neither stand against what was left nor come back when they leave the minute.
	uncounted      []uncounted
	uncountedFloor float64 // what the uncounted sends forgotten with the log's older part took
}

// uncounted is a send the deployment never counted: when it was sent, its mark and its cost.
type uncounted struct {
	at         time.Time
	mark, cost float64
}

// sendMark is one send: when, and the meter's mark after it.
type sendMark struct {
	at   time.Time
	mark float64
}

// charge counts cost as sent now and returns the mark an answer to it is placed against.
func (m *meter) charge(cost float64, now time.Time) float64 {
	m.sent += cost
	if len(m.log) == maxSendLog { // forget the older half at once: one copy per maxSendLog/2 sends
		m.floor = m.log[maxSendLog/2-1].mark
		m.log = append(m.log[:0], m.log[maxSendLog/2:]...)
	}
	m.log = append(m.log, sendMark{at: now, mark: m.sent})
	return m.sent
}

// age forgets the meter's news once it is more than a minute old: everything it counted has left the minute,
// other clients' sends included. What this client sent is kept: answers to it may still come, and are placed
// against it.
func (m *meter) age(now time.Time) {
	if m.known && now.Sub(m.sentAt) > quotaWindow {
		m.known, m.left, m.surprise, m.promised = false, 0, 0, 0
	}
}

// idle reports whether this client has sent nothing for a minute: no answer can still be placed against the
// meter.
func (m *meter) idle(now time.Time) bool {
	return len(m.log) == 0 || now.Sub(m.log[len(m.log)-1].at) > quotaWindow
}

// promise records a 429's word that cost will be free at at.
func (m *meter) promise(cost float64, at time.Time) {
	m.promised, m.promisedMark, m.promisedAt = cost, m.sent, at
}

// uncount takes back the charge of cost made at at up to mark: the deployment never counted it.
func (m *meter) uncount(cost, mark float64, at time.Time) {
	if len(m.uncounted) == maxSendLog {
		m.uncountedFloor += m.uncounted[0].cost
		m.uncounted = m.uncounted[1:]
	}
	m.uncounted = append(m.uncounted, uncounted{at: at, mark: mark, cost: cost})
}

// countedAt is what the deployment counted of this client's sends made by t (as far as the log remembers).
func (m *meter) countedAt(t time.Time) float64 {
	counted := m.markAt(t) - m.uncountedFloor
	for _, u := range m.uncounted {
		if !u.at.After(t) {
			counted -= u.cost
		}
	}
	return counted
}

// countedSince is what the deployment counted of this client's sends after mark, up to upTo.
func (m *meter) countedSince(mark, upTo float64) float64 {
	counted := upTo - mark
	for _, u := range m.uncounted {
		if u.mark > mark && u.mark <= upTo {
			counted -= u.cost
		}
	}
	return counted
}

// markAt is the meter's mark as of t: what this client had sent by then (as far as the log remembers).
func (m *meter) markAt(t time.Time) float64 {
	i := sort.Search(len(m.log), func(i int) bool { return m.log[i].at.After(t) })
	if i == 0 {
		return m.floor
	}
	return m.log[i-1].mark
}

// heard takes in an answer to a request sent at sentAt and charged up to mark, which said left (and limit, when
// it is positive) remained once the request was counted. cost is what the request took (0 when it was refused):
// left plus cost was free before it, which bounds the limit from below. An answer to a request sent before the
// one the meter last heard of is older news, and is not taken in.
func (m *meter) heard(left, limit, cost, mark float64, sentAt time.Time) {
	if limit > 0 {
		m.limit = limit
	} else {
		m.limit = max(m.limit, left+cost)
	}
	if m.known && (sentAt.Before(m.sentAt) || sentAt.Equal(m.sentAt) && mark < m.mark) {
		return
	}
	if m.known {
		expected := m.roomAt(sentAt, mark)
		m.surprise += (max(expected-left, 0) - m.surprise) / 4
	}
	m.left, m.mark, m.sentAt, m.known = min(left, m.limit), mark, sentAt, m.limit > 0
	// Sends that had left the minute before this request arrived are in no count any more.
	gone := sentAt.Add(-quotaWindow)
	cut := sort.Search(len(m.log), func(i int) bool { return m.log[i].at.After(gone) })
	if cut > 0 {
		m.floor = m.log[cut-1].mark
		m.log = append(m.log[:0], m.log[cut:]...)
	}
	kept := m.uncounted[:0]
	for _, u := range m.uncounted {
		if u.at.After(gone) {
			kept = append(kept, u)
		} else {
			m.uncountedFloor += u.cost
		}
	}
	m.uncounted = kept
}

// room is what the deployment has left at now, as far as the meter knows, less what other clients may have
// taken since its news.
func (m *meter) room(now time.Time) float64 {
	room := m.roomAt(now, m.sent) - 4*m.surprise
	if m.promised > 0 && !now.Before(m.promisedAt) {
		room = max(room, m.promised-(m.sent-m.promisedMark))
	}
	return room
}

// roomAt is what the last news says the deployment has left at t once this client has sent up to mark.
func (m *meter) roomAt(t time.Time, mark float64) float64 {
	since := m.countedSince(m.mark, mark)                                              // sent after the answered request
	back := m.countedAt(t.Add(-quotaWindow)) - m.countedAt(m.sentAt.Add(-quotaWindow)) // left the minute since
	return min(m.limit, m.left-since+max(back, 0))
}

// shortBy is how long after now until the meter has room for cost: 0 when it has now, or knows nothing.
func (m *meter) shortBy(cost float64, now time.Time) time.Duration {
	if !m.known {
		return 0
	}
	short := cost - m.room(now)
	if short <= 0 {
		return 0
	}
	// The sends that leave the minute next give room back, in order; the news itself is forgotten a minute
	// after its request, when everything it counted has left.
	d := m.sentAt.Add(quotaWindow).Sub(now)
	target := m.markAt(now.Add(-quotaWindow)) + short
	if i := sort.Search(len(m.log), func(i int) bool { return m.log[i].mark >= target }); i < len(m.log) {
		d = min(d, m.log[i].at.Add(quotaWindow).Sub(now))
	}
	if m.promised >= cost+(m.sent-m.promisedMark) && now.Before(m.promisedAt) {
		d = min(d, m.promisedAt.Sub(now)) // a 429's Retry-After
	}
	return max(d, time.Nanosecond)
}
