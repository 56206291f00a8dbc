package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ContentType is the media type of the Prometheus text format, version 0.0.4.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// WriteText writes every family in the Prometheus text format, sorted by
// metric name and then by label values, so that the output is stable.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := make([]family, 0, len(r.families))
	for _, f := range r.families {
		fams = append(fams, f)
	}
	r.mu.Unlock()
	sort.Slice(fams, func(i, j int) bool { return fams[i].meta().name < fams[j].meta().name })

	bw := bufio.NewWriter(w)
	for _, f := range fams {
		writeFamily(bw, f)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

type sample struct {
	labelValues []string
	value       float64
}

// textWriter is a family that writes its own text (a summary).
type textWriter interface {
	writeText(w *bufio.Writer)
}

func writeFamily(w *bufio.Writer, f family) {
	if tw, ok := f.(textWriter); ok {
		tw.writeText(w)
		return
	}
	d := f.meta()
	var samples []sample
	f.collect(func(v float64, labelValues ...string) {
		if len(labelValues) != len(d.labels) {
			panic(fmt.Sprintf("metrics: %s: emitted %d label values, want %d", d.name, len(labelValues), len(d.labels)))
		}
		samples = append(samples, sample{labelValues: slices.Clone(labelValues), value: v})
	})
	sort.Slice(samples, func(i, j int) bool {
		return slices.Compare(samples[i].labelValues, samples[j].labelValues) < 0
	})
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", d.name, escapeHelp(d.help), d.name, d.typ)
	for _, s := range samples {
		w.WriteString(d.name)
		if len(d.labels) > 0 {
			w.WriteByte('{')
			for i, l := range d.labels {
				if i > 0 {
					w.WriteByte(',')
				}
				fmt.Fprintf(w, "%s=\"%s\"", l, escapeLabel(s.labelValues[i]))
			}
			w.WriteByte('}')
		}
		w.WriteByte(' ')
		w.WriteString(formatValue(s.value))
		w.WriteByte('\n')
	}
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// escapeHelp and escapeLabel escape for the text format; invalid UTF-8
// (e.g. a label taken from a bus or a file name) becomes U+FFFD, since
// Prometheus rejects it.
func escapeHelp(s string) string  { return helpEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD")) }
func escapeLabel(s string) string { return labelEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD")) }

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// ServeHTTP serves the registry in the Prometheus text format to GET and
// HEAD requests.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	if req.Method == http.MethodHead {
		return
	}
	// An error here means the client went away; nothing to do.
	_ = r.WriteText(w)
}
