package cluster

import (
	"context"

	"google.golang.org/grpc/metadata"
)

// MarkForwardedIncoming makes ctx look like a request a peer forwarded.
func MarkForwardedIncoming(ctx context.Context) context.Context {
	return metadata.NewIncomingContext(ctx, metadata.Pairs(forwardedKey, "1"))
}
