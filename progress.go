package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progress draws a bar on a terminal, or a line every few seconds when
// the output is a file or a pipe (a log under systemd).
type progress struct {
	w         io.Writer
	tty       bool
	last      time.Time
	drawn     bool
	count, of int
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progress) update(done, expected int) {
	p.count, p.of = done, expected
	now := time.Now()
	interval := 5 * time.Second
	if p.tty {
		interval = 100 * time.Millisecond
	}
	if now.Sub(p.last) < interval {
		return
	}
	p.last = now
	p.draw()
}

func (p *progress) draw() {
	if !p.tty {
		fmt.Fprintf(p.w, "read %d users\n", p.count)
		return
	}
	p.drawn = true
	const width = 30
	if p.of <= 0 {
		fmt.Fprintf(p.w, "\rreading users: %d", p.count)
		return
	}
	filled := min(width, p.count*width/p.of)
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d (expected from the last sync)", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.count, p.of)
}

// done finishes the bar's line.
func (p *progress) done() {
	if p.tty && p.drawn {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
