package wire

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// MaxMessageBytes bounds one gRPC message in either direction. Persist values
// reach hundreds of MiB, so the 4 MiB gRPC default is far too small; the
// protocol promises at least 256 MiB and this leaves room for framing and a
// few versions in one Scan.
const MaxMessageBytes = 300 << 20

// LeaderMetadataKey is the response header in which a replica names the
// gRPC address of the leader it knows, so that clients can go there directly.
const LeaderMetadataKey = "committer-leader"

// Keepalive: a peer that stops answering (paused process, dead host, silent
// partition) is detected within keepaliveTime+keepaliveTimeout instead of
// when the kernel gives up on the TCP connection.
const (
	keepaliveTime    = 20 * time.Second
	keepaliveTimeout = 10 * time.Second
	// keepaliveMinTime is the most frequent client ping a server accepts; it
	// must stay below every client's keepalive time (peerKeepaliveTime
	// included) or servers would close healthy clients for pinging too
	// often (gRPC's default minimum is 5 minutes).
	keepaliveMinTime = 5 * time.Second
	// Replica-to-replica connections carry forwarded calls whose clients
	// wait on them: after heavy packet loss a connection can sit in TCP's
	// retransmission backoff for tens of seconds while every forwarded
	// call on it times out, so peers probe each other as often as gRPC
	// allows (it raises any client keepalive time below 10s to 10s) and
	// replace a connection whose probe is not answered within 2s.
	peerKeepaliveTime    = 10 * time.Second
	peerKeepaliveTimeout = 2 * time.Second
)

// streamWorkers is the number of goroutines a server keeps to run calls on:
// enough for the concurrency of a busy leader (calls wait on the read gate
// and the coalescer), few enough to cost little memory when idle.
const streamWorkers = 256

// ServerOptions lifts gRPC's message limits on a server to MaxMessageBytes
// and sets keepalive matching DialOptions.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		// A fresh goroutine per call grows its stack from the minimum on
		// every call; under load that copying took a seventh of the
		// leader's CPU. Workers keep their grown stacks. Past them gRPC
		// starts a goroutine as before, so a burst never queues.
		grpc.NumStreamWorkers(streamWorkers),
	}
}

// DialOptions lifts gRPC's message limits on a client connection to
// MaxMessageBytes, sets keepalive matching ServerOptions, and tracks request
// delivery for TrackDelivery. Every connection that carries consensus calls
// should be built with them.
func DialOptions() []grpc.DialOption {
	return dialOptions(keepaliveTime, keepaliveTimeout)
}

// PeerDialOptions are DialOptions for a replica's connections to other
// replicas: a connection that stops answering is replaced within
// peerKeepaliveTime+peerKeepaliveTimeout.
func PeerDialOptions() []grpc.DialOption {
	return dialOptions(peerKeepaliveTime, peerKeepaliveTimeout)
}

func dialOptions(keepaliveTime, keepaliveTimeout time.Duration) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithStatsHandler(deliveryTracker{}),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageBytes),
			grpc.MaxCallSendMsgSize(MaxMessageBytes),
		),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
	}
}
