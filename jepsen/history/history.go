package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Type is the kind of an event.
type Type string

const (
	// Invoke: a client started an operation.
	Invoke Type = "invoke"
	// OK: the operation completed with a result.
	OK Type = "ok"
	// Fail: the operation certainly had no effect (a determinate error).
	Fail Type = "fail"
	// Info: the outcome is unknown (an indeterminate error or a timeout).
	Info Type = "info"
)

// Operation names (F). Nemesis events use F = "nemesis".
const (
	FHead     = "head"
	FCAS      = "cas"
	FMultiCAS = "multi_cas"
	FScan     = "scan"
	FTruncate = "truncate"
	FListKeys = "list_keys"
	FNemesis  = "nemesis"
)

// NemesisProcess is the Process of nemesis events.
const NemesisProcess = -1

// Version is one version of a shard.
type Version struct {
	SeqNo uint64 `json:"seqno"`
	Data  string `json:"data"`
}

// CASOp is one element of a multi_cas, or the argument of a cas.
type CASOp struct {
	Key   string `json:"key"`
	SeqNo uint64 `json:"seqno"`
	Data  string `json:"data"`
}

// Event is one line of the history. Which fields are set depends on F and
// Type:
//
//	head      invoke: Key              ok: Head (nil: absent)
//	cas       invoke: CAS              ok: Committed
//	multi_cas invoke: Multi            ok: MultiCommitted (one per element)
//	scan      invoke: Key, From, Limit ok: Versions
//	truncate  invoke: Key, SeqNo       ok: Deleted
//	list_keys invoke: -                ok: Keys
//	nemesis   Type invoke = fault starts, ok = fault ends; Fault, Targets
//
// A completion repeats the invocation's Process, F and arguments, so each
// line can be read alone. Error holds the error text of fail and info.
type Event struct {
	Index   int    `json:"index"`
	Process int    `json:"process"`
	Type    Type   `json:"type"`
	F       string `json:"f"`
	// Time is nanoseconds since the start of the run, from a monotonic clock.
	Time int64  `json:"time"`
	Node string `json:"node,omitempty"`

	Key   string  `json:"key,omitempty"`
	SeqNo uint64  `json:"seqno,omitempty"`
	From  uint64  `json:"from,omitempty"`
	Limit uint64  `json:"limit,omitempty"`
	CAS   *CASOp  `json:"cas,omitempty"`
	Multi []CASOp `json:"multi,omitempty"`

	Head           *Version  `json:"head,omitempty"`
	Committed      bool      `json:"committed,omitempty"`
	MultiCommitted []bool    `json:"multi_committed,omitempty"`
	Versions       []Version `json:"versions,omitempty"`
	Deleted        uint64    `json:"deleted,omitempty"`
	Keys           []string  `json:"keys,omitempty"`

	Fault   string   `json:"fault,omitempty"`
	Targets []string `json:"targets,omitempty"`

	Error string `json:"error,omitempty"`
}

// Recorder appends events with indices and monotonic times; safe for
// concurrent use.
type Recorder struct {
	start time.Time

	mu     sync.Mutex
	events []Event
}

// NewRecorder starts the clock.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Start returns the run's start time.
func (r *Recorder) Start() time.Time { return r.start }

// Add stamps e with the next index and the current time and appends it.
func (r *Recorder) Add(e Event) Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Index = len(r.events)
	e.Time = time.Since(r.start).Nanoseconds()
	r.events = append(r.events, e)
	return e
}

// Events returns a copy of the history so far.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Write writes events as JSON lines.
func Write(w io.Writer, events []Event) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, e := range events {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Read parses JSON lines.
func Read(r io.Reader) ([]Event, error) {
	var out []Event
	dec := json.NewDecoder(r)
	for {
		var e Event
		if err := dec.Decode(&e); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("history line %d: %w", len(out)+1, err)
		}
		out = append(out, e)
	}
}
