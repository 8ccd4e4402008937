package observability

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// DashboardPath is the dashboard, relative to the deploy module.
const DashboardPath = "observability/grafana-dashboard.json"

// Dashboard is the part of a Grafana dashboard model the checks read.
type Dashboard struct {
	UID           string     `json:"uid"`
	Title         string     `json:"title"`
	SchemaVersion int        `json:"schemaVersion"`
	Panels        []Panel    `json:"panels"`
	Templating    Templating `json:"templating"`
}

// Templating holds the dashboard's variables.
type Templating struct {
	List []Variable `json:"list"`
}

// Variable is a template variable. Query is a string for a query variable
// in Grafana's classic form, or an object in the query editor's form
// (with the text under "query"); for a datasource variable it is the
// plugin type.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *DatasourceRef  `json:"datasource"`
	IncludeAll bool            `json:"includeAll"`
	Multi      bool            `json:"multi"`
	AllValue   string          `json:"allValue"`
}

// QueryText returns the variable's query as text.
func (v Variable) QueryText() (string, error) {
	if len(v.Query) == 0 {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v.Query, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &obj); err != nil {
		return "", fmt.Errorf("variable %s: query is neither text nor an object with a query: %w", v.Name, err)
	}
	return obj.Query, nil
}

// Panel is a dashboard panel; a row's panels are under Panels when it is
// collapsed.
type Panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	GridPos    GridPos        `json:"gridPos"`
	Datasource *DatasourceRef `json:"datasource"`
	Targets    []Target       `json:"targets"`
	Panels     []Panel        `json:"panels"`
}

// GridPos places a panel on Grafana's 24-column grid.
type GridPos struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

// DatasourceRef names a data source, here always ${datasource}.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Datasource   *DatasourceRef `json:"datasource"`
}

// ParseDashboard decodes a dashboard's JSON. Fields the checks do not read
// are ignored; one they read with another JSON type is an error.
func ParseDashboard(content []byte) (*Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal(content, &d); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return &d, nil
}

// AllPanels returns every panel, those inside collapsed rows included, in
// order.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Query is one PromQL expression of the dashboard and where it is.
type Query struct {
	Where string
	Expr  string
}

// labelValues is Grafana's label_values(selector, label) variable query,
// the only form this dashboard's variables use; its selector is PromQL.
var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.+?)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// Queries returns every PromQL expression in the dashboard as written
// (Grafana variables unexpanded): each target's expr, and the selector of
// each query variable's label_values(). A variable query of another form is
// an error, so that a new one is not left unchecked.
func (d *Dashboard) Queries() ([]Query, error) {
	var qs []Query
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		text, err := v.QueryText()
		if err != nil {
			return nil, err
		}
		m := labelValues.FindStringSubmatch(text)
		if m == nil {
			return nil, fmt.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, text)
		}
		qs = append(qs, Query{Where: "variable " + v.Name, Expr: m[1]})
	}
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			qs = append(qs, Query{Where: fmt.Sprintf("panel %d (%s) target %s", p.ID, p.Title, t.RefID), Expr: t.Expr})
		}
	}
	return qs, nil
}

// variableRef is a Grafana variable in an expression: $name or ${name}
// (formats such as ${name:regex} are not used, and are refused).
var variableRef = regexp.MustCompile(`\$\{([^}]*)\}|\$([a-zA-Z_][a-zA-Z0-9_]*)`)

// Expand replaces every Grafana variable in expr with values[name], the
// plausible value Grafana would substitute, and fails on a variable values
// lacks or a $ left over, so that no expression is parsed with a variable
// in it.
func Expand(expr string, values map[string]string) (string, error) {
	var missing []string
	out := variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		name := m[1] + m[2]
		v, ok := values[name]
		if !ok {
			missing = append(missing, name)
			return ref
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("%q uses variables with no value: %s", expr, strings.Join(missing, ", "))
	}
	if strings.Contains(out, "$") {
		return "", fmt.Errorf("%q has a $ that is no variable", expr)
	}
	return out, nil
}

// Variables returns the names of the variables expr refers to.
func Variables(expr string) []string {
	var names []string
	for _, m := range variableRef.FindAllStringSubmatch(expr, -1) {
		names = append(names, m[1]+m[2])
	}
	return names
}
