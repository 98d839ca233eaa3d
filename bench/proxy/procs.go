package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTick = 100

// procStat is the part of /proc/<pid>/stat used here.
type procStat struct {
	pid, ppid int
	comm      string
	cpu       float64 // utime + stime, seconds
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// comm is in parentheses and may hold spaces: split after the last ')'.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return procStat{pid: pid, ppid: ppid, comm: string(b[open+1 : end]), cpu: (ut + st) / clockTick}, nil
}

// allProcs lists every process's stat (those that vanish while listing are
// skipped).
func allProcs() []procStat {
	ents, _ := os.ReadDir("/proc")
	out := make([]procStat, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := readStat(pid); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// tree is pid and its descendants (nginx: the master and its workers).
func tree(pid int) []int {
	if pid <= 0 {
		return nil
	}
	all := allProcs()
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		for _, s := range all {
			if s.ppid == out[i] {
				out = append(out, s.pid)
			}
		}
	}
	return out
}

// children are the pids whose parent is this process.
func children() map[int]bool {
	me := os.Getpid()
	out := map[int]bool{}
	for _, s := range allProcs() {
		if s.ppid == me {
			out[s.pid] = true
		}
	}
	return out
}

// treeCPU is the CPU seconds used so far by pid and its descendants.
func treeCPU(pid int) float64 {
	var sum float64
	for _, p := range tree(pid) {
		if s, err := readStat(p); err == nil {
			sum += s.cpu
		}
	}
	return sum
}

// treeMem is the resident and proportional set size (KiB) of pid and its
// descendants. RSS counts shared pages once per process (nginx's workers
// share most of the master's); PSS splits them, so it adds up.
func treeMem(pid int) (rss, pss int) {
	for _, p := range tree(pid) {
		rss += statusKiB(p, "VmRSS:")
		pss += rollupKiB(p, "Pss:")
	}
	return rss, pss
}

func statusKiB(pid int, key string) int {
	return fieldKiB(fmt.Sprintf("/proc/%d/status", pid), key)
}

func rollupKiB(pid int, key string) int {
	return fieldKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), key)
}

func fieldKiB(path, key string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 2 && fs[0] == key {
			n, _ := strconv.Atoi(fs[1])
			return n
		}
	}
	return 0
}

// systemCPU is the busy time of every CPU from /proc/stat, in seconds,
// and the part of it spent in interrupts (loopback networking runs partly
// in softirq, charged to no process).
func systemCPU() (busy, irq float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		switch {
		case i == 3 || i == 4 || i >= 8: // idle, iowait; guest times are in user already
		case i == 5 || i == 6: // irq, softirq
			irq += n
			busy += n
		default:
			busy += n
		}
	}
	return busy / clockTick, irq / clockTick
}

// selfCPU is this process's CPU seconds (the load generator).
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// child is a process this tool started (the upstream, nginx), killed with
// this process (Pdeathsig) even when the tool itself is killed.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string // its stdout and stderr
	done chan struct{}
	err  error
}

func startChild(name, logPath, bin string, args, env []string) (*child, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	c := &child{name: name, log: logPath, done: make(chan struct{})}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = lf, lf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		lf.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends sig, then SIGKILL after limit.
func (c *child) stop(sig syscall.Signal, limit time.Duration) error {
	if c == nil || c.exited() {
		return nil
	}
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
		return nil
	case <-time.After(limit):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within %s after %s: killed", c.name, limit, sig)
	}
}

// tailFile prints the last lines of a log to stderr.
func tailFile(title, path string, lines int) {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "--- %s: %v\n", title, err)
		return
	}
	if len(b) == 0 {
		fmt.Fprintf(os.Stderr, "--- %s (%s) is empty\n", title, path)
		return
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	fmt.Fprintf(os.Stderr, "--- last %d lines of %s (%s):\n", min(lines, len(all)), title, filepath.Base(path))
	for _, l := range all[max(0, len(all)-lines):] {
		fmt.Fprintln(os.Stderr, l)
	}
}

var errExited = errors.New("exited")
