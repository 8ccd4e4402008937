// Package admission decides, before a call's handler runs, whether the
// call may run at all: who is calling (authorization by the identity in the
// client's verified certificate) and how many calls its connection already
// has in progress (a per-connection limit). A refused call has done
// nothing, so its status (PermissionDenied, ResourceExhausted) is
// determinate. See docs/architecture.md §12 (Transport security and
// authorization).
package admission
