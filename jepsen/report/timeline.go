package report

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/hacommit/committer/jepsen/checker"
	"github.com/hacommit/committer/jepsen/history"
)

// The timeline image is TimelineWidth x TimelineHeight pixels.
const (
	TimelineWidth  = 1200
	TimelineHeight = 900
	timelineDPI    = 100
)

// series is the per-second view of a run: completions by outcome, and
// latency percentiles of the operations acknowledged in each second.
type series struct {
	seconds        int
	ok, fail, info []float64
	p50, p99       []float64 // milliseconds; NaN in a second without acknowledgements
}

func timeSeries(events []history.Event, span time.Duration) series {
	n := max(1, int(math.Ceil(span.Seconds())))
	s := series{
		seconds: n,
		ok:      make([]float64, n),
		fail:    make([]float64, n),
		info:    make([]float64, n),
		p50:     make([]float64, n),
		p99:     make([]float64, n),
	}
	latencies := make([][]time.Duration, n)
	for _, o := range pairOps(events) {
		if o.done == nil {
			continue
		}
		sec := min(n-1, int(o.done.Time/int64(time.Second)))
		switch o.done.Type {
		case history.OK:
			s.ok[sec]++
			latencies[sec] = append(latencies[sec], o.latency())
		case history.Fail:
			s.fail[sec]++
		case history.Info:
			s.info[sec]++
		}
	}
	for i, ls := range latencies {
		s.p50[i], s.p99[i] = math.NaN(), math.NaN()
		if len(ls) > 0 {
			l := latencyOf(ls)
			s.p50[i], s.p99[i] = ms(l.P50), ms(l.P99)
		}
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func withAlpha(c color.NRGBA, a uint8) color.NRGBA {
	c.A = a
	return c
}

// faultShading shades every fault window across the full height of a panel,
// without taking part in the panel's data range.
type faultShading struct {
	faults []checker.Fault
	colors map[string]color.NRGBA
}

func (fs faultShading) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	for _, f := range fs.faults {
		x0 := max(c.Min.X, trX(seconds(f.Start)))
		x1 := min(c.Max.X, trX(seconds(f.End)))
		if x1 <= x0 {
			x1 = min(c.Max.X, x0+1) // an instant still shows
		}
		c.FillPolygon(withAlpha(fs.colors[f.Kind], 0x38), []vg.Point{
			{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: c.Max.Y}, {X: x0, Y: c.Max.Y},
		})
	}
}

// faultLanes draws each fault window as a bar in its kind's lane.
type faultLanes struct {
	faults []checker.Fault
	lane   map[string]int
	colors map[string]color.NRGBA
}

func (fl faultLanes) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	for _, f := range fl.faults {
		x0 := max(c.Min.X, trX(seconds(f.Start)))
		x1 := min(c.Max.X, trX(seconds(f.End)))
		if x1 <= x0 {
			x1 = min(c.Max.X, x0+1)
		}
		y := float64(fl.lane[f.Kind])
		y0, y1 := trY(y-0.35), trY(y+0.35)
		c.FillPolygon(withAlpha(fl.colors[f.Kind], 0xc0), []vg.Point{
			{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1},
		})
	}
}

// swatch is a legend thumbnail: a filled box.
type swatch struct{ color color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(s.color, []vg.Point{
		{X: c.Min.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Max.Y}, {X: c.Min.X, Y: c.Max.Y},
	})
}

func seconds(ns int64) float64 { return float64(ns) / float64(time.Second) }

// writeTimeline draws three aligned panels sharing the time axis: throughput
// per second by outcome, latency percentiles of acknowledged operations (log
// scale, since a fault turns milliseconds into seconds), and one lane per
// fault kind. Fault windows are shaded behind the first two panels.
func writeTimeline(w io.Writer, s Summary, events []history.Event, faults []checker.Fault) error {
	ts := timeSeries(events, s.Span)
	kinds, colors := checker.FaultColors(faults)
	spanSec := math.Max(s.Span.Seconds(), 1)
	shading := faultShading{faults: faults, colors: colors}

	// Legends sit in a column right of the panels, where they cover nothing.
	seriesLegend, latencyLegend := plot.NewLegend(), plot.NewLegend()
	throughput := plot.New()
	throughput.Title.Text = fmt.Sprintf("Throughput (seed %d, %d nodes, %s)", s.Run.Seed, s.Run.Nodes, VerdictLine(s.Verdict))
	throughput.Y.Label.Text = "operations / s"
	throughput.Add(shading, plotter.NewGrid())
	peak := 1.0
	for _, line := range []struct {
		name  string
		ys    []float64
		color color.NRGBA
	}{
		{"ok", ts.ok, color.NRGBA{R: 0x1a, G: 0x7f, B: 0x1a, A: 0xff}},
		{"fail", ts.fail, color.NRGBA{R: 0xe6, G: 0x9f, B: 0x00, A: 0xff}},
		{"info", ts.info, color.NRGBA{R: 0xb0, G: 0x00, B: 0x00, A: 0xff}},
	} {
		l, err := plotter.NewLine(perSecond(line.ys))
		if err != nil {
			return err
		}
		l.Color = line.color
		l.Width = vg.Points(1.5)
		throughput.Add(l)
		seriesLegend.Add(line.name, l)
		peak = max(peak, slices.Max(line.ys))
	}
	for _, k := range kinds {
		seriesLegend.Add("fault: "+k, swatch{withAlpha(colors[k], 0x80)})
	}
	throughput.Y.Min, throughput.Y.Max = 0, peak*1.1

	latency := plot.New()
	latency.Title.Text = "Latency of acknowledged operations"
	latency.Y.Label.Text = "milliseconds"
	latency.Add(shading, plotter.NewGrid())
	lowest, highest := math.Inf(1), math.Inf(-1)
	for _, line := range []struct {
		name   string
		ys     []float64
		color  color.NRGBA
		dashed bool
	}{
		{"p50", ts.p50, color.NRGBA{R: 0x1f, G: 0x4e, B: 0xb4, A: 0xff}, false},
		{"p99", ts.p99, color.NRGBA{R: 0x7b, G: 0x1f, B: 0xa2, A: 0xff}, true},
	} {
		segments := segmentsOf(line.ys)
		for i, seg := range segments {
			// points too, so that an isolated second still shows
			l, pts, err := plotter.NewLinePoints(seg)
			if err != nil {
				return err
			}
			l.Color = line.color
			l.Width = vg.Points(1.5)
			if line.dashed {
				l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			pts.Color = line.color
			pts.Radius = vg.Points(1.5)
			pts.Shape = draw.CircleGlyph{}
			latency.Add(l, pts)
			if i == 0 {
				latencyLegend.Add(line.name, l)
			}
			for _, p := range seg {
				lowest, highest = math.Min(lowest, p.Y), math.Max(highest, p.Y)
			}
		}
	}
	if highest > 0 {
		latency.Y.Scale = plot.LogScale{}
		latency.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		latency.Y.Min, latency.Y.Max = lowest/2, highest*8
	}

	lanes := plot.New()
	lanes.Title.Text = "Faults"
	lanes.X.Label.Text = "seconds since start"
	lane := make(map[string]int, len(kinds))
	ticks := make([]plot.Tick, len(kinds))
	for i, k := range kinds {
		// first kind on top
		lane[k] = len(kinds) - 1 - i
		ticks[i] = plot.Tick{Value: float64(lane[k]), Label: k}
	}
	lanes.Add(faultLanes{faults: faults, lane: lane, colors: colors})
	lanes.Y.Tick.Marker = plot.ConstantTicks(ticks)
	lanes.Y.Min, lanes.Y.Max = -0.6, math.Max(float64(len(kinds))-0.4, 0.4)
	if len(kinds) == 0 {
		lanes.Title.Text = "Faults: none"
	}

	panels := [][]*plot.Plot{{throughput}, {latency}, {lanes}}
	for _, row := range panels {
		row[0].X.Min, row[0].X.Max = 0, spanSec
	}
	img := vgimg.NewWith(vgimg.UseWH(TimelineWidth*vg.Inch/timelineDPI, TimelineHeight*vg.Inch/timelineDPI), vgimg.UseDPI(timelineDPI))
	dc := draw.New(img)
	legendWidth := 1.6 * vg.Inch
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8), PadY: vg.Points(6)}
	canvases := plot.Align(panels, tiles, draw.Crop(dc, 0, -legendWidth, 0, 0))
	for i, row := range panels {
		row[0].Draw(canvases[i][0])
	}
	for i, l := range []*plot.Legend{&seriesLegend, &latencyLegend} {
		l.Left, l.Top = true, true
		panel := canvases[i][0]
		l.Draw(draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: dc.Max.X - legendWidth + vg.Points(6), Y: panel.Min.Y},
			Max: vg.Point{X: dc.Max.X, Y: panel.Max.Y - vg.Points(24)},
		}})
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

// perSecond places one value per second at the middle of its second.
func perSecond(ys []float64) plotter.XYs {
	xys := make(plotter.XYs, len(ys))
	for i, y := range ys {
		xys[i] = plotter.XY{X: float64(i) + 0.5, Y: y}
	}
	return xys
}

// segmentsOf splits per-second values at the seconds without a value, so a
// line is not drawn across them.
func segmentsOf(ys []float64) []plotter.XYs {
	var out []plotter.XYs
	var cur plotter.XYs
	for i, y := range ys {
		if math.IsNaN(y) {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			continue
		}
		// the log scale cannot show zero
		cur = append(cur, plotter.XY{X: float64(i) + 0.5, Y: math.Max(y, 0.001)})
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
