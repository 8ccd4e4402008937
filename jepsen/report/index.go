package report

import (
	"html/template"
	"io"
)

// indexPage is the entry point of a report directory: the verdict, the
// timeline, the text summary and links to the other artifacts.
var indexPage = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>committer run {{.Summary.Run.Seed}}: {{.Summary.Verdict}}</title>
<style>
body { font-family: sans-serif; margin: 2em; }
.PASS { color: #1a7f1a; } .FAIL { color: #b00000; } .UNKNOWN { color: #b36b00; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #ddd; }
</style>
</head>
<body>
<h1 class="{{.Summary.Verdict}}">VERDICT: {{.Summary.Verdict}}</h1>
{{with .Summary.Run}}<p class="run">seed {{.Seed}} · {{.Nodes}} nodes · {{.Duration}} · isolation <b>{{if .Isolation}}{{.Isolation}}{{else}}replica default{{end}}</b> · nemeses {{range $i, $n := .Nemeses}}{{if $i}}, {{end}}{{$n}}{{end}}</p>{{end}}
<p>
<a href="{{.Files.Linearizability}}">linearizability visualization</a> ·
<a href="{{.Files.SummaryJSON}}">summary.json</a> ·
<a href="{{.Files.SummaryText}}">summary.txt</a> ·
<a href="{{.Files.History}}">history</a>
</p>
<img src="{{.Files.Timeline}}" alt="throughput, latency and fault windows over time">
<pre>{{.Text}}</pre>
</body>
</html>
`))

type indexFiles struct {
	Linearizability, SummaryJSON, SummaryText, History, Timeline string
}

func writeIndex(w io.Writer, s Summary, text string) error {
	return indexPage.Execute(w, struct {
		Summary Summary
		Files   indexFiles
		Text    string
	}{s, indexFiles{LinearizabilityFile, SummaryJSONFile, SummaryTextFile, HistoryFile, TimelineFile}, text})
}
