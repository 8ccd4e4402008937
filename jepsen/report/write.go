package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
)

// Names of the files Write creates.
const (
	HistoryFile         = "history.jsonl"
	SummaryJSONFile     = "summary.json"
	SummaryTextFile     = "summary.txt"
	TimelineFile        = "timeline.png"
	LinearizabilityFile = "linearizability.html"
	IndexFile           = "index.html"
)

// Write writes a run's artifacts into dir, creating it if needed: the
// history, the summary as JSON and as text, the timeline plot, the
// linearizability visualization, and an index page showing the verdict,
// timeline and summary with links to the rest. It returns the summary.
func Write(dir string, run Run, events []history.Event, res *checker.Result) (Summary, error) {
	if res == nil {
		return Summary{}, errors.New("report: no checker result")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Summary{}, fmt.Errorf("report: %w", err)
	}
	s := Summarize(run, events, res)
	var text strings.Builder
	if err := s.WriteText(&text); err != nil {
		return s, fmt.Errorf("report: %w", err)
	}
	writers := []struct {
		name  string
		write func(io.Writer) error
	}{
		{HistoryFile, func(w io.Writer) error { return history.Write(w, events) }},
		{SummaryJSONFile, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(s)
		}},
		{SummaryTextFile, func(w io.Writer) error {
			_, err := io.WriteString(w, text.String())
			return err
		}},
		{TimelineFile, func(w io.Writer) error { return writeTimeline(w, s, events, res.Faults) }},
		{IndexFile, func(w io.Writer) error { return writeIndex(w, s, text.String()) }},
	}
	for _, wr := range writers {
		if err := writeFile(filepath.Join(dir, wr.name), wr.write); err != nil {
			return s, err
		}
	}
	if err := res.WriteVisualization(filepath.Join(dir, LinearizabilityFile)); err != nil {
		return s, fmt.Errorf("report: %w", err)
	}
	return s, nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	werr := write(f)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("report: writing %s: %w", path, err)
	}
	return nil
}
