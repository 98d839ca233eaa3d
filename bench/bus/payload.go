package main

// The events' payload: JSON with fixed-width fields at fixed offsets, so
// the publisher stamps a reused buffer in place and a handler reads the
// sequence number, key and send time without decoding JSON (the bus, not
// a JSON decoder, is what is measured):
//
//	{"seq":"0000000042","key":"0000317","sent_ns":"1712345678901234567","body":"…"}
//
// The body pads the payload to the size asked for with chat-like text.

const (
	tagSeq  = `{"seq":"`
	tagKey  = `","key":"`
	tagSent = `","sent_ns":"`
	tagBody = `","body":"`
	tagEnd  = `"}`

	seqDigits  = 10
	keyDigits  = 7
	sentDigits = 19

	offSeq  = len(tagSeq)
	offKey  = offSeq + seqDigits + len(tagKey)
	offSent = offKey + keyDigits + len(tagSent)
	offBody = offSent + sentDigits + len(tagBody)

	// minPayload is a payload with an empty body.
	minPayload = offBody + len(tagEnd)
	// maxKeys is what keyDigits can number.
	maxKeys = 10_000_000
)

const filler = "Hi all, the build is green again and the release notes are in the shared folder; " +
	"please read them before the call at three. Thanks for fixing the flaky test! "

// newPayload returns a size-byte payload template (size >= minPayload).
func newPayload(size int) []byte {
	b := make([]byte, 0, size)
	b = append(b, tagSeq...)
	b = appendZeros(b, seqDigits)
	b = append(b, tagKey...)
	b = appendZeros(b, keyDigits)
	b = append(b, tagSent...)
	b = appendZeros(b, sentDigits)
	b = append(b, tagBody...)
	for i := 0; len(b) < size-len(tagEnd); i++ {
		b = append(b, filler[i%len(filler)])
	}
	return append(b, tagEnd...)
}

func appendZeros(b []byte, n int) []byte {
	for range n {
		b = append(b, '0')
	}
	return b
}

// stamp writes the sequence number, key number and send time into p.
func stamp(p []byte, seq, key int, sentNs int64) {
	putDigits(p[offSeq:offSeq+seqDigits], uint64(seq))
	putDigits(p[offKey:offKey+keyDigits], uint64(key))
	putDigits(p[offSent:offSent+sentDigits], uint64(sentNs))
}

// putDigits writes v in decimal, zero-padded to len(b).
func putDigits(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// parse reads what stamp wrote; ok is false for anything else.
func parse(p []byte) (seq, key int, sentNs int64, ok bool) {
	if len(p) < minPayload || string(p[:offSeq]) != tagSeq || string(p[len(p)-len(tagEnd):]) != tagEnd {
		return 0, 0, 0, false
	}
	s, ok1 := digits(p[offSeq : offSeq+seqDigits])
	k, ok2 := digits(p[offKey : offKey+keyDigits])
	t, ok3 := digits(p[offSent : offSent+sentDigits])
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, false
	}
	return int(s), int(k), int64(t), true
}

func digits(b []byte) (uint64, bool) {
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}
