package postgres

import (
	"testing"

	"github.com/hacommit/committer/backend"
	"github.com/hacommit/committer/backend/conformance"
)

func TestConformance(t *testing.T) {
	for _, iso := range []Isolation{Serializable, ReadCommitted} {
		t.Run(iso.String(), func(t *testing.T) {
			conformance.Run(t, func(t *testing.T) backend.Fencer {
				b, _ := newStore(t, Config{Isolation: iso})
				return b
			})
		})
	}
}
