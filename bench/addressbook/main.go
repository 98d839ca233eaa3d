// Command addressbook measures the address book's search from outside: it
// generates a directory of N contacts (Russian names, departments, work
// numbers, extensions, mobiles, e-mails), imports it with
// `elph addressbook import`, starts `elph serve --all` on that data, and
// runs searches from C concurrent clients over loopback for a while:
// name fragments, full names, Latin spellings, departments, parts of
// numbers in several spellings and extensions. It prints the import rate,
// the index load, searches per second and the latency quantiles seen by
// the clients, with the server's own search time.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/elph-server/elph/bench/benchkit"
)

const adminPassword = "bench-admin-password-1"

var (
	lastNames   = []string{"Иванов", "Петров", "Сидоров", "Кузнецов", "Смирнов", "Попов", "Лебедев", "Козлов", "Новиков", "Морозов", "Волков", "Соловьёв", "Васильев", "Зайцев", "Павлов", "Семёнов", "Голубев", "Виноградов", "Богданов", "Воробьёв"}
	firstNames  = []string{"Иван", "Пётр", "Алексей", "Сергей", "Андрей", "Дмитрий", "Михаил", "Николай", "Юрий", "Олег"}
	middleNames = []string{"Иванович", "Петрович", "Алексеевич", "Сергеевич", "Андреевич", "Дмитриевич"}
	depts       = []string{"Бухгалтерия", "Разработка", "Связь", "Продажи", "Склад", "Логистика", "Юридический отдел", "Канцелярия", "Охрана", "Маркетинг"}
	latin       = map[string]string{"Иванов": "ivanov", "Петров": "petrov", "Смирнов": "smirnov", "Кузнецов": "kuznetsov", "Лебедев": "lebedev"}
)

type options struct {
	bin      string
	n        int
	conc     int
	dur      time.Duration
	dbDriver string
	dsn      string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "./bin/elph", "elph binary to measure")
	flag.IntVar(&o.n, "n", 100_000, "contacts in the directory")
	flag.IntVar(&o.conc, "c", 4, "concurrent search clients")
	flag.DurationVar(&o.dur, "d", 20*time.Second, "duration of the search phase")
	flag.StringVar(&o.dbDriver, "dbdriver", "sqlite", "database driver: sqlite (in the temp data dir) or mysql (with -dsn)")
	flag.StringVar(&o.dsn, "dsn", "", "mysql DSN, e.g. root@tcp(127.0.0.1:3306)/elph_bench_ab")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "addressbook bench:", err)
		os.Exit(1)
	}
}

// person is one generated contact, kept for building queries.
type person struct {
	last, first, dept, work, ext, mobile string
}

func generate(n int, path string) ([]person, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "id,last_name,first_name,middle_name,organization,department,title,phone_work,phone_extension,phone_mobile,email")
	r := rand.New(rand.NewPCG(1, 2))
	people := make([]person, n)
	for i := range n {
		// Surnames get a numeric suffix group so names are varied but
		// searches still hit many people (as in a real company: many
		// Ивановы).
		p := person{
			last:   lastNames[r.IntN(len(lastNames))],
			first:  firstNames[r.IntN(len(firstNames))],
			dept:   fmt.Sprintf("%s %d", depts[r.IntN(len(depts))], r.IntN(30)+1),
			work:   fmt.Sprintf("+7 (495) %03d-%02d-%02d", i/10000, (i/100)%100, i%100),
			ext:    fmt.Sprint(10000 + i),
			mobile: fmt.Sprintf("8 9%02d %03d %04d", r.IntN(100), r.IntN(1000), r.IntN(10000)),
		}
		people[i] = p
		fmt.Fprintf(w, "p%d,%s,%s,%s,ООО \"Ромашка\",%s,Инженер,%s,%s,%s,user%d@corp.example\n",
			i, p.last, p.first, middleNames[r.IntN(len(middleNames))], p.dept, p.work, p.ext, p.mobile, i)
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return people, f.Close()
}

// query picks a realistic search: what people type in a phone book.
func query(r *rand.Rand, people []person) (kind, q string) {
	p := people[r.IntN(len(people))]
	switch r.IntN(8) {
	case 0:
		return "surname prefix", strings.ToLower(string([]rune(p.last)[:4]))
	case 1:
		return "full name", p.last + " " + p.first
	case 2:
		if l, ok := latin[p.last]; ok {
			return "latin", l
		}
		return "surname", p.last
	case 3:
		return "department", p.dept
	case 4:
		return "extension", p.ext
	case 5:
		return "number part", strings.NewReplacer(" ", "", "(", "", ")", "", "-", "").Replace(p.work)[6:]
	case 6:
		return "number as dialled", "8" + strings.NewReplacer(" ", "", "(", "", ")", "", "-", "", "+7", "").Replace(p.work)
	}
	return "mobile part", strings.ReplaceAll(p.mobile, " ", "")[4:9]
}

func run(o options) error {
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("build the binary first (make build): %w", err)
	}
	if o.dbDriver == "mysql" && o.dsn == "" {
		return errors.New("-dbdriver mysql needs -dsn")
	}
	dir, err := os.MkdirTemp("", "elph-bench-ab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env := []string{
		"ELPH_SSO_INITIAL_ADMIN_PASSWORD=" + adminPassword,
		"ELPH_SSO_ACCESS_TOKEN_TTL=1h",
		"ELPH_LOG_LEVEL=warn",
		"ELPH_NODE_DATA_DIR=" + filepath.Join(dir, "data"),
		"ELPH_DATABASE_DRIVER=" + o.dbDriver,
	}
	if o.dsn != "" {
		env = append(env, "ELPH_DATABASE_DSN="+o.dsn)
	}

	csvPath := filepath.Join(dir, "directory.csv")
	t0 := time.Now()
	people, err := generate(o.n, csvPath)
	if err != nil {
		return err
	}
	fmt.Printf("generated %d contacts in %s\n", o.n, time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	cmd := exec.Command(o.bin, "addressbook", "import", csvPath)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	importTime := time.Since(t0)
	if err != nil {
		return fmt.Errorf("import: %v\n%s", err, tail(string(out), 20))
	}
	fmt.Printf("imported in %s (%.0f contacts/s)\n%s\n", importTime.Round(time.Millisecond), float64(o.n)/importTime.Seconds(), tail(string(out), 12))

	node, err := benchkit.Start(o.bin, []string{"serve", "--all"}, env...)
	if err != nil {
		return err
	}
	ready, err := node.WaitReady(5 * time.Minute)
	if err != nil {
		_, _ = node.Stop(10 * time.Second)
		return err
	}
	defer func() {
		if _, err := node.Stop(30 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "stop:", err)
		}
	}()
	sso := "http://" + node.Env("ELPH_MODULES_SSO_LISTEN")
	book := "http://" + node.Env("ELPH_MODULES_ADDRESSBOOK_LISTEN")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	token, err := login(client, sso)
	if err != nil {
		return err
	}
	// The index loads at start; wait until it holds every contact.
	var total int
	for deadline := time.Now().Add(2 * time.Minute); ; {
		res, _, err := search(client, book, token, "")
		if err == nil {
			total = res.Total
		}
		if total >= o.n || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if total < o.n {
		return fmt.Errorf("the index holds %d contacts, want %d", total, o.n)
	}
	rss, _ := node.RSSKiB()
	fmt.Printf("node ready in %s with %d contacts indexed; RSS %.1f MiB\n\n", ready.Round(time.Millisecond), total, float64(rss)/1024)

	ctx, cancel := context.WithTimeout(context.Background(), o.dur)
	defer cancel()
	var (
		mu      sync.Mutex
		lat     = map[string][]time.Duration{}
		all     []time.Duration
		empty   int
		errs    int
		lastErr error
		wg      sync.WaitGroup
	)
	start := time.Now()
	for c := range o.conc {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 7))
			for ctx.Err() == nil {
				kind, q := query(r, people)
				res, d, err := search(client, book, token, q)
				mu.Lock()
				if err != nil {
					if ctx.Err() == nil {
						errs++
						lastErr = err
					}
				} else {
					lat[kind] = append(lat[kind], d)
					all = append(all, d)
					if res.Total == 0 {
						empty++
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if errs > 0 {
		fmt.Fprintf(os.Stderr, "%d failed searches, last: %v\n", errs, lastErr)
	}
	fmt.Printf("%d searches in %s from %d clients: %.0f searches/s; %d with no result\n\n",
		len(all), elapsed.Round(time.Millisecond), o.conc, float64(len(all))/elapsed.Seconds(), empty)
	benchkit.Header(os.Stdout)
	benchkit.Row(os.Stdout, "search (all kinds)", "ms", benchkit.Millis(all))
	for _, k := range []string{"surname prefix", "full name", "latin", "surname", "department", "extension", "number part", "number as dialled", "mobile part"} {
		if len(lat[k]) > 0 {
			benchkit.Row(os.Stdout, "  "+k, "ms", benchkit.Millis(lat[k]))
		}
	}
	rss, _ = node.RSSKiB()
	fmt.Printf("\nserver RSS after the searches: %.1f MiB\n", float64(rss)/1024)
	return nil
}

func login(c *http.Client, sso string) (string, error) {
	body := strings.NewReader(`{"login":"admin","password":"` + adminPassword + `","device":"bench"}`)
	resp, err := c.Post(sso+"/v1/login", "application/json", body)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("admin login: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken, nil
}

type searchResult struct {
	Total int `json:"total"`
}

func search(c *http.Client, book, token, q string) (searchResult, time.Duration, error) {
	req, err := http.NewRequest("GET", book+"/v1/contacts?limit=20&q="+url.QueryEscape(q), nil)
	if err != nil {
		return searchResult{}, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return searchResult{}, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	d := time.Since(t0)
	if err != nil {
		return searchResult{}, 0, err
	}
	if resp.StatusCode != 200 {
		return searchResult{}, 0, fmt.Errorf("search %q: %d %s", q, resp.StatusCode, b)
	}
	var res searchResult
	return res, d, json.Unmarshal(b, &res)
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}
