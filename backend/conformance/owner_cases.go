package conformance

import (
	"testing"

	"github.com/hacommit/committer/backend"
)

// testFenceBelongsToOneOwner: the first owner to fence claims an unowned
// store; another owner can then neither fence it, at any epoch, nor write
// it, even at the very epoch the owner holds; only Adopt hands it over, and
// then the old owner's handles are refused.
func testFenceBelongsToOneOwner(t *testing.T, s backend.Fencer) {
	ctx := t.Context()
	a, b := s.Owned("cluster-a"), s.Owned("cluster-b")

	st, err := s.FenceState(ctx)
	if err != nil || st.Lost || st.Owner != "" || st.Epoch != 0 {
		t.Fatalf("fresh fence = %+v, %v; want unowned at 0", st, err)
	}
	mustFence(t, ctx, a, 5)
	a5 := a.AtEpoch(5)
	wantCAS(t, ctx, a5, "k", vd(0, "a0"), true)
	st, err = s.FenceState(ctx)
	if err != nil || st.Owner != "cluster-a" || st.Epoch != 5 || st.FencedAt.IsZero() {
		t.Fatalf("fence after a claimed it = %+v, %v; want cluster-a at 5 with a time", st, err)
	}

	// Another owner: refused at a lower, the same and a higher epoch.
	for _, e := range []uint64{4, 5, 9} {
		wantErr(t, "cluster-b fence", b.Fence(ctx, e), backend.ErrForeignOwner)
	}
	// Its handles write nothing, even at the owner's epoch.
	_, err = b.AtEpoch(5).CompareAndSet(ctx, "k", vd(1, "b1"))
	wantFenced(t, "cluster-b cas at epoch 5", err)
	_, err = b.AtEpoch(5).CompareAndSetMulti(ctx, []backend.CASOp{{Shard: "k", New: vd(1, "b1")}})
	wantFenced(t, "cluster-b multi at epoch 5", err)
	_, err = b.AtEpoch(5).Truncate(ctx, "k", 0)
	wantFenced(t, "cluster-b truncate at epoch 5", err)
	// The unowned handle is another owner too.
	_, err = s.AtEpoch(5).CompareAndSet(ctx, "k", vd(1, "unowned"))
	wantFenced(t, "unowned cas at epoch 5", err)
	wantErr(t, "unowned fence", s.Fence(ctx, 9), backend.ErrForeignOwner)
	wantHead(t, ctx, s, "k", &backend.VersionedData{SeqNo: 0, Data: []byte("a0")})

	// The owner goes on; refusals changed nothing.
	mustFence(t, ctx, a, 6)
	wantCAS(t, ctx, a.AtEpoch(6), "k", vd(1, "a1"), true)

	// An operator hands the store to b, at an epoch below a's.
	if err := b.Adopt(ctx, 2); err != nil {
		t.Fatalf("adopt by cluster-b: %v", err)
	}
	st, err = s.FenceState(ctx)
	if err != nil || st.Owner != "cluster-b" || st.Epoch != 2 {
		t.Fatalf("fence after adoption = %+v, %v; want cluster-b at 2", st, err)
	}
	_, err = a.AtEpoch(6).CompareAndSet(ctx, "k", vd(2, "a2"))
	wantFenced(t, "cluster-a cas after adoption", err)
	wantErr(t, "cluster-a fence after adoption", a.Fence(ctx, 100), backend.ErrForeignOwner)
	wantCAS(t, ctx, b.AtEpoch(2), "k", vd(2, "b2"), true)
	mustFence(t, ctx, b, 3)
	wantCAS(t, ctx, b.AtEpoch(3), "k", vd(3, "b3"), true)
	wantScan(t, ctx, s, "k", 0, backend.MaxSeqNo, []backend.VersionedData{vd(0, "a0"), vd(1, "a1"), vd(2, "b2"), vd(3, "b3")})

	wantErr(t, "adopt without an owner", s.Adopt(ctx, 1), backend.ErrInvalidArgument)
}
