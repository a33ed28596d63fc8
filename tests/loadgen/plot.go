package main

import (
	"errors"
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// writePlot draws latency percentiles (p50, p95, p99) against offered load,
// one point per step, as a standalone SVG: log-scale latency axis, and a
// log-scale load axis when the steps span 4× or more.
func writePlot(w io.Writer, title, subtitle string, steps []StepResult) error {
	if len(steps) == 0 {
		return errors.New("plot: no measured step")
	}
	const (
		W, H                   = 760, 440
		left, right, top, bott = 70, 150, 64, 66
		pw, ph                 = W - left - right, H - top - bott
	)
	xs := make([]float64, len(steps))
	xmin, xmax := math.Inf(1), 0.0
	for i, s := range steps {
		xs[i] = s.OfferedDelivered
		xmin, xmax = math.Min(xmin, xs[i]), math.Max(xmax, xs[i])
	}
	logX := xmin > 0 && xmax/xmin >= 4
	var xpos func(v float64) float64
	switch {
	case len(steps) == 1 || xmax == xmin:
		xpos = func(float64) float64 { return left + pw/2 }
	case logX:
		lo, hi := math.Log10(xmin), math.Log10(xmax)
		pad := (hi - lo) * 0.08
		lo, hi = lo-pad, hi+pad
		xpos = func(v float64) float64 { return left + (math.Log10(v)-lo)/(hi-lo)*pw }
	default:
		lo, hi := 0.0, xmax*1.08
		xpos = func(v float64) float64 { return left + (v-lo)/(hi-lo)*pw }
	}

	// Latency axis: whole decades around the data, in ms.
	ymin, ymax := math.Inf(1), 0.0
	for _, s := range steps {
		for _, v := range []float64{s.Latency.P50, s.Latency.P95, s.Latency.P99} {
			if v > 0 {
				ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
			}
		}
	}
	if ymax == 0 {
		ymin, ymax = 0.1, 1
	}
	dlo := math.Floor(math.Log10(ymin))
	dhi := math.Ceil(math.Log10(ymax))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	ypos := func(ms float64) float64 {
		if ms <= 0 {
			ms = math.Pow(10, dlo)
		}
		return top + ph - (math.Log10(ms)-dlo)/(dhi-dlo)*ph
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%d" y="44" fill="#555">%s</text>`+"\n", left, html.EscapeString(subtitle))

	// Grid and latency labels: 1, 2, 5 per decade.
	for d := dlo; d <= dhi; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > dhi+1e-9 {
				break
			}
			y := ypos(v)
			stroke, dash := "#ddd", ` stroke-dasharray="3,3"`
			if m == 1 {
				stroke, dash = "#bbb", ""
			}
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"%s/>`+"\n", left, left+pw, y, y, stroke, dash)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#333">%s</text>`+"\n", left-6, y+4, msLabel(v))
		}
	}
	// Load ticks, one per step, with what was achieved when short of it.
	for i, s := range steps {
		x := xpos(xs[i])
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>`+"\n", x, x, top, top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#333">%s</text>`+"\n", x, top+ph+16, rateLabel(s.OfferedDelivered))
		if s.OfferedDelivered > 0 && s.DeliveredPerS < 0.95*s.OfferedDelivered {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#b00" font-size="10">got %s</text>`+"\n", x, top+ph+29, rateLabel(s.DeliveredPerS))
		}
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#333">offered load (delivered messages/s)</text>`+"\n", left+pw/2, H-14)
	fmt.Fprintf(&b, `<text transform="translate(18 %d) rotate(-90)" text-anchor="middle" fill="#333">end-to-end latency (ms, log)</text>`+"\n", top+ph/2)

	series := []struct {
		name, color string
		v           func(StepResult) float64
	}{
		{"p50", "#1f77b4", func(s StepResult) float64 { return s.Latency.P50 }},
		{"p95", "#ff7f0e", func(s StepResult) float64 { return s.Latency.P95 }},
		{"p99", "#d62728", func(s StepResult) float64 { return s.Latency.P99 }},
	}
	for k, se := range series {
		var pts []string
		for i, s := range steps {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xpos(xs[i]), ypos(se.v(s))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", se.color, strings.Join(pts, " "))
		for i, s := range steps {
			x, y := xpos(xs[i]), ypos(se.v(s))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s %s at %s/s</title></circle>`+"\n", x, y, se.color, se.name, msLabel(se.v(s)), rateLabel(xs[i]))
			if se.name == "p99" {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s" font-size="10">%s</text>`+"\n", x, y-8, se.color, msLabel(s.Latency.P99))
			}
		}
		ly := top + 10 + k*20
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"/><circle cx="%d" cy="%d" r="3.5" fill="%s"/>`+"\n",
			left+pw+16, left+pw+40, ly, ly, se.color, left+pw+28, ly, se.color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left+pw+46, ly+4, se.name)
	}
	// Server efficiency per step beside the legend.
	y := top + 90
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#333" font-weight="bold">server µs/msg</text>`+"\n", left+pw+16, y)
	for _, s := range steps {
		y += 16
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#333">%s: %.1f</text>`+"\n", left+pw+16, y, rateLabel(s.OfferedDelivered), s.ServerUSPerMsg)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func msLabel(ms float64) string {
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%gs", math.Round(ms/10)/100)
	case ms >= 10:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 1:
		return fmt.Sprintf("%.3gms", ms)
	default:
		return fmt.Sprintf("%.2gms", ms)
	}
}

func rateLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e4)/100)
	case v >= 1e3:
		return fmt.Sprintf("%gk", math.Round(v/100)/10)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
