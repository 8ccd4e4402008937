package faultdelay

import (
	"context"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	d, err := Parse([]string{"read-round-decided=250ms"})
	if err != nil {
		t.Fatal(err)
	}
	if got := d[ReadRoundDecided]; got != 250*time.Millisecond {
		t.Fatalf("delay = %s, want 250ms", got)
	}
	if got := d.String(); got != "read-round-decided=250ms" {
		t.Fatalf("String() = %q", got)
	}
	if d, err := Parse(nil); err != nil || len(d) != 0 {
		t.Fatalf("Parse(nil) = %v, %v; want empty", d, err)
	}
	for spec, want := range map[string]string{
		"read-round-decided":      `fault delay "read-round-decided": want POINT=DURATION`,
		"apply=1s":                `fault delay "apply=1s": unknown point "apply" (known: read-round-decided, leadership-lost, forwarded-write-done)`,
		"read-round-decided=soon": `fault delay "read-round-decided=soon": time: invalid duration "soon"`,
		"read-round-decided=0s":   `fault delay "read-round-decided=0s": the duration must be positive`,
		"read-round-decided=-1s":  `fault delay "read-round-decided=-1s": the duration must be positive`,
	} {
		if _, err := Parse([]string{spec}); err == nil || err.Error() != want {
			t.Errorf("Parse(%q) = %v, want %q", spec, err, want)
		}
	}
	if _, err := Parse([]string{"read-round-decided=1s", "read-round-decided=2s"}); err == nil ||
		err.Error() != `fault delay "read-round-decided=2s": point read-round-decided given twice` {
		t.Errorf("duplicate point: %v", err)
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	d := Delays{ReadRoundDecided: time.Hour}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	done := make(chan struct{})
	go func() {
		d.Wait(ctx, ReadRoundDecided)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait outlived its cancelled context")
	}
	// A point without a delay returns at once, even with a live context.
	Delays{}.Wait(t.Context(), ReadRoundDecided)
}
