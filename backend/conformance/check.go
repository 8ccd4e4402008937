package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/hacommit/committer/backend"
)

// all is the scan limit meaning "no limit".
const all uint64 = math.MaxUint64

// tooBig is the first seqno outside persist's signed column (2^63).
const tooBig = backend.MaxSeqNo + 1

func vd(seqno uint64, data string) backend.VersionedData {
	return backend.VersionedData{SeqNo: seqno, Data: []byte(data)}
}

// describe prints a version without dumping megabytes into a failure message.
func describe(v *backend.VersionedData) string {
	if v == nil {
		return "none"
	}
	return fmt.Sprintf("{%d, %s}", v.SeqNo, describeBytes(v.Data))
}

func describeBytes(b []byte) string {
	const show = 24
	if len(b) <= show {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%q...(%d bytes)", b[:show], len(b))
}

// DescribeAll renders versions for failure messages.
func DescribeAll(vs []backend.VersionedData) string {
	parts := make([]string, len(vs))
	for i := range vs {
		parts[i] = describe(&vs[i])
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// sameVersion treats nil and empty data as equal: the wire format cannot tell
// them apart, so no layer is required to preserve the difference.
func sameVersion(a, b *backend.VersionedData) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.SeqNo == b.SeqNo && bytes.Equal(a.Data, b.Data)
}

// SameVersions reports whether a and b hold the same versions in order,
// by sameVersion's rule.
func SameVersions(a, b []backend.VersionedData) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameVersion(&a[i], &b[i]) {
			return false
		}
	}
	return true
}

// wantErr asserts err is a determinate error carrying sentinel.
func wantErr(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: got no error, want determinate %q", what, sentinel)
		return
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("%s: got error %v, want one matching %q", what, err, sentinel)
	}
	if !backend.IsDeterminate(err) {
		t.Errorf("%s: error %v is indeterminate, want determinate", what, err)
	}
}

func wantHead(t *testing.T, ctx context.Context, s backend.Consensus, shard string, want *backend.VersionedData) {
	t.Helper()
	got, err := s.Head(ctx, shard)
	if err != nil {
		t.Errorf("head(%q): %v", shard, err)
		return
	}
	if !sameVersion(got, want) {
		t.Errorf("head(%q) = %s, want %s", shard, describe(got), describe(want))
	}
}

func wantScan(t *testing.T, ctx context.Context, s backend.Consensus, shard string, from, limit uint64, want []backend.VersionedData) {
	t.Helper()
	got, err := s.Scan(ctx, shard, from, limit)
	if err != nil {
		t.Errorf("scan(%q, %d, %d): %v", shard, from, limit, err)
		return
	}
	if !SameVersions(got, want) {
		t.Errorf("scan(%q, %d, %d) = %s, want %s", shard, from, limit, DescribeAll(got), DescribeAll(want))
	}
}

func wantCAS(t *testing.T, ctx context.Context, s backend.Consensus, shard string, v backend.VersionedData, wantCommitted bool) {
	t.Helper()
	got, err := s.CompareAndSet(ctx, shard, v)
	if err != nil {
		t.Errorf("cas(%q, %s): %v", shard, describe(&v), err)
		return
	}
	if got != wantCommitted {
		t.Errorf("cas(%q, %s) committed = %v, want %v", shard, describe(&v), got, wantCommitted)
	}
}

func wantMulti(t *testing.T, ctx context.Context, s backend.Consensus, ops []backend.CASOp, want []bool) {
	t.Helper()
	got, err := s.CompareAndSetMulti(ctx, ops)
	if err != nil {
		t.Errorf("multi %v: %v", describeOps(ops), err)
		return
	}
	if !slices.Equal(got, want) {
		t.Errorf("multi %v = %v, want %v", describeOps(ops), got, want)
	}
}

func describeOps(ops []backend.CASOp) string {
	parts := make([]string, len(ops))
	for i := range ops {
		parts[i] = fmt.Sprintf("(%q, %s)", ops[i].Shard, describe(&ops[i].New))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func wantTruncate(t *testing.T, ctx context.Context, s backend.Consensus, shard string, seqno, wantDeleted uint64) {
	t.Helper()
	got, err := s.Truncate(ctx, shard, seqno)
	if err != nil {
		t.Errorf("truncate(%q, %d): %v", shard, seqno, err)
		return
	}
	if got != wantDeleted {
		t.Errorf("truncate(%q, %d) deleted %d, want %d", shard, seqno, got, wantDeleted)
	}
}

func wantTruncateAboveHead(t *testing.T, ctx context.Context, s backend.Consensus, shard string, seqno uint64) {
	t.Helper()
	_, err := s.Truncate(ctx, shard, seqno)
	wantErr(t, fmt.Sprintf("truncate(%q, %d)", shard, seqno), err, backend.ErrTruncateAboveHead)
}

func wantKeys(t *testing.T, ctx context.Context, s backend.Consensus, want ...string) {
	t.Helper()
	got, err := s.ListKeys(ctx)
	if err != nil {
		t.Errorf("list_keys: %v", err)
		return
	}
	if !slices.Equal(got, want) {
		t.Errorf("list_keys = %q, want %q", got, want)
	}
}

// mustCommit writes v and fails the test now if it did not commit; used to
// set up state the rest of a case depends on.
func mustCommit(t *testing.T, ctx context.Context, s backend.Consensus, shard string, v backend.VersionedData) {
	t.Helper()
	ok, err := s.CompareAndSet(ctx, shard, v)
	if err != nil || !ok {
		t.Fatalf("setup cas(%q, %s) = %v, %v; want committed", shard, describe(&v), ok, err)
	}
}

// snapshot is everything a reader can observe about a set of shards.
type snapshot struct {
	keys  []string
	heads map[string]*backend.VersionedData
	scans map[string][]backend.VersionedData
}

func takeSnapshot(t *testing.T, ctx context.Context, s backend.Consensus, shards []string) snapshot {
	t.Helper()
	snap := snapshot{
		heads: make(map[string]*backend.VersionedData, len(shards)),
		scans: make(map[string][]backend.VersionedData, len(shards)),
	}
	var err error
	if snap.keys, err = s.ListKeys(ctx); err != nil {
		t.Fatalf("snapshot list_keys: %v", err)
	}
	for _, shard := range shards {
		if snap.heads[shard], err = s.Head(ctx, shard); err != nil {
			t.Fatalf("snapshot head(%q): %v", shard, err)
		}
		if snap.scans[shard], err = s.Scan(ctx, shard, 0, all); err != nil {
			t.Fatalf("snapshot scan(%q): %v", shard, err)
		}
	}
	return snap
}

// wantSameSnapshot reports every shard whose observable state differs.
func wantSameSnapshot(t *testing.T, what string, before, after snapshot, shards []string) {
	t.Helper()
	if !slices.Equal(before.keys, after.keys) {
		t.Errorf("%s: list_keys changed from %q to %q", what, before.keys, after.keys)
	}
	for _, shard := range shards {
		if !sameVersion(before.heads[shard], after.heads[shard]) {
			t.Errorf("%s: head(%q) changed from %s to %s", what, shard, describe(before.heads[shard]), describe(after.heads[shard]))
		}
		if !SameVersions(before.scans[shard], after.scans[shard]) {
			t.Errorf("%s: scan(%q) changed from %s to %s", what, shard, DescribeAll(before.scans[shard]), DescribeAll(after.scans[shard]))
		}
	}
}
