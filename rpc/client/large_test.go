package client_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"runtime/debug"
	"testing"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/bolt"
	"github.com/hacommit/committer/rpc/rpctest"
	"github.com/hacommit/committer/rpc/server"
)

// largeValueBytes is well above gRPC's 4 MiB default and close to the
// 256 MiB the protocol promises, leaving room for one version per message.
const largeValueBytes = 200 << 20

// TestLargeValueRoundTrip writes and reads back one 200 MiB version through
// client, gRPC and server into bolt.
func TestLargeValueRoundTrip(t *testing.T) {
	limit := largeValueBytes + 1<<20
	store := rpctest.OpenBolt(t, bolt.Options{MaxDataBytes: limit, Logger: quietLogger()})
	srv := rpctest.Serve(t, store, server.Config{MaxDataBytes: limit, Logger: quietLogger()})
	c := rpctest.Dial(t, []string{srv.Addr})
	ctx := t.Context()

	// The value passes through several full-size buffers (marshal, receive,
	// unmarshal, storage) on each side; collecting garbage early keeps the
	// peak near the live size, which matters under the race detector.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	data := largeValue(largeValueBytes)
	committed, err := c.CompareAndSet(ctx, "large", backend.VersionedData{SeqNo: 0, Data: data})
	if err != nil || !committed {
		t.Fatalf("cas of %d bytes = %v, %v; want committed", len(data), committed, err)
	}
	head, err := c.Head(ctx, "large")
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	if head == nil || head.SeqNo != 0 || !bytes.Equal(head.Data, data) {
		t.Fatalf("head does not return the %d bytes written", len(data))
	}
	head = nil // let the collector have it before the scan
	versions, err := c.Scan(ctx, "large", 0, 10)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if len(versions) != 1 || versions[0].SeqNo != 0 || !bytes.Equal(versions[0].Data, data) {
		t.Fatalf("scan returned %d versions, want the one of %d bytes", len(versions), len(data))
	}
}

// largeValue returns n bytes that are not one repeated byte: a random block
// (so nothing compresses it away) tiled with a per-tile marker (so a chunk
// copied to the wrong offset is caught).
func largeValue(n int) []byte {
	const tile = 1 << 20
	block := make([]byte, tile)
	_, _ = rand.NewChaCha8([32]byte{'l', 'a', 'r', 'g', 'e'}).Read(block) // never fails
	data := make([]byte, n)
	for off := 0; off < n; off += tile {
		copy(data[off:], block)
		binary.BigEndian.PutUint64(data[off:], uint64(off))
	}
	return data
}
