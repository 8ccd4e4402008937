package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

func apply(t *testing.T, f *FSM, cmd []byte) {
	t.Helper()
	res := f.Apply(&raft.Log{Type: raft.LogCommand, Data: cmd}).(ApplyResult)
	if res.Err != nil {
		t.Fatalf("apply %s: %v", cmd, res.Err)
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestApplyAndSnapshotRoundTrip(t *testing.T) {
	f := New()
	a := Member{ID: "a", RaftAddr: "127.0.0.1:1", GRPCAddr: "127.0.0.1:2", HTTPAddr: "127.0.0.1:3"}
	b := Member{ID: "b", RaftAddr: "127.0.0.1:4"}
	apply(t, f, SetMember(a))
	apply(t, f, SetMember(b))
	b.GRPCAddr = "127.0.0.1:5"
	apply(t, f, SetMember(b)) // update in place
	apply(t, f, RemoveMember("a"))
	apply(t, f, RecordEpoch(Epoch{Term: 2, LeaderID: "b"}))
	apply(t, f, SetHotShards([]string{"x", "y"}))
	// The first cluster id applied wins; a later one is ignored.
	apply(t, f, SetClusterID("c-1"))
	apply(t, f, SetClusterID("c-2"))

	want := State{
		ClusterID: "c-1",
		Members:   map[string]Member{"b": b},
		Epochs:    []Epoch{{Term: 2, LeaderID: "b"}},
		HotShards: []string{"x", "y"},
	}
	if got := f.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("state = %+v, want %+v", got, want)
	}
	if e, ok := f.State().LatestEpoch(); !ok || e != (Epoch{Term: 2, LeaderID: "b"}) {
		t.Fatalf("LatestEpoch = %+v %v", e, ok)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := New()
	if err := g.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	if got := g.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored = %+v, want %+v", got, want)
	}
}

func TestStateIsACopy(t *testing.T) {
	f := New()
	apply(t, f, SetMember(Member{ID: "a", RaftAddr: "r"}))
	s := f.State()
	s.Members["zzz"] = Member{ID: "zzz"}
	if _, ok := f.Member("zzz"); ok {
		t.Fatal("mutating a returned State changed the FSM")
	}
}

func TestRestoreVersion1Fixture(t *testing.T) {
	raw, err := os.ReadFile("testdata/snapshot-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	f := New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	want := State{
		Members:   map[string]Member{"a": {ID: "a", RaftAddr: "10.0.0.1:6883", GRPCAddr: "10.0.0.1:6882", HTTPAddr: "10.0.0.1:6884"}},
		Epochs:    []Epoch{{Term: 3, LeaderID: "a"}},
		HotShards: []string{"s1", "s2"},
	}
	if got := f.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("state = %+v, want %+v", got, want)
	}
}

func TestRejectsNewerAndMalformed(t *testing.T) {
	f := New()
	apply(t, f, SetMember(Member{ID: "a", RaftAddr: "r"}))
	before := f.State()

	err := f.Restore(io.NopCloser(bytes.NewReader([]byte(`{"version":2,"state":{}}`))))
	if !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("restore v2: err = %v, want ErrUnsupportedVersion", err)
	}
	for _, cmd := range []string{
		`{"v":2,"op":"set_member","member":{"id":"b"}}`,
		`{"v":1,"op":"bogus"}`,
		`{"v":1,"op":"set_member"}`,
		`{"v":1,"op":"remove_member"}`,
		`{"v":1,"op":"record_epoch"}`,
		`{"v":1,"op":"retain_members"}`,
		`{"v":1,"op":"retain_members","member_ids":["a",""]}`,
		`not json`,
	} {
		res := f.Apply(&raft.Log{Type: raft.LogCommand, Data: []byte(cmd)}).(ApplyResult)
		if res.Err == nil {
			t.Errorf("apply %s: no error", cmd)
		}
	}
	if got := f.State(); !reflect.DeepEqual(got, before) {
		t.Fatalf("rejected commands changed state: %+v, want %+v", got, before)
	}
}

func TestBounds(t *testing.T) {
	f := New()
	for i := 1; i <= MaxEpochs+10; i++ {
		apply(t, f, RecordEpoch(Epoch{Term: uint64(i), LeaderID: "a"}))
	}
	ep := f.State().Epochs
	if len(ep) != MaxEpochs || ep[0].Term != 11 || ep[len(ep)-1].Term != MaxEpochs+10 {
		t.Fatalf("epochs kept: len %d first %d last %d", len(ep), ep[0].Term, ep[len(ep)-1].Term)
	}
	many := make([]string, MaxHotShards+5)
	for i := range many {
		many[i] = fmt.Sprint("s", i)
	}
	apply(t, f, SetHotShards(many))
	if got := len(f.State().HotShards); got != MaxHotShards {
		t.Fatalf("hot shards kept %d, want %d", got, MaxHotShards)
	}
}

func TestChangedIsClosedOnApply(t *testing.T) {
	f := New()
	ch := f.Changed()
	select {
	case <-ch:
		t.Fatal("closed before any change")
	default:
	}
	apply(t, f, SetMember(Member{ID: "a", RaftAddr: "r"}))
	select {
	case <-ch:
	default:
		t.Fatal("not closed after a change")
	}
}

// RetainMembers forgets exactly the records outside its list; ids it names
// without a record stay unrecorded, and nothing else in the state changes.
func TestRetainMembers(t *testing.T) {
	f := New()
	a := Member{ID: "a", RaftAddr: "127.0.0.1:1", GRPCAddr: "127.0.0.1:2"}
	b := Member{ID: "b", RaftAddr: "127.0.0.1:3"}
	c := Member{ID: "c", RaftAddr: "127.0.0.1:4"}
	for _, m := range []Member{a, b, c} {
		apply(t, f, SetMember(m))
	}
	apply(t, f, RecordEpoch(Epoch{Term: 7, LeaderID: "b"}))
	apply(t, f, SetClusterID("c-1"))
	apply(t, f, SetHotShards([]string{"x"}))
	apply(t, f, RetainMembers([]string{"a", "d"}))
	want := State{
		ClusterID: "c-1",
		Members:   map[string]Member{"a": a},
		Epochs:    []Epoch{{Term: 7, LeaderID: "b"}},
		HotShards: []string{"x"},
	}
	if got := f.State(); !reflect.DeepEqual(got, want) {
		t.Fatalf("state = %+v, want %+v", got, want)
	}
	cmd, err := Decode(RetainMembers([]string{"a", "d"}))
	if err != nil || cmd.Op != OpRetainMembers || !reflect.DeepEqual(cmd.MemberIDs, []string{"a", "d"}) {
		t.Fatalf("decode = %+v, %v", cmd, err)
	}
}
