package bus

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		in      string
		topic   bool // valid for Publish
		subject bool // valid for Subscribe
	}{
		{"chat.message.created", true, true},
		{"call.ended", true, true},
		{"presence", true, true},
		{"a_b-c.0-9", true, true},
		{strings.Repeat("a", MaxSubjectLen), true, true},
		{strings.Repeat("a.", MaxSubjectLen/2) + "a", true, true}, // 255 bytes, 128 tokens
		{strings.Repeat("a", MaxSubjectLen+1), false, false},
		{"", false, false},
		{".", false, false},
		{"a..b", false, false},
		{".a", false, false},
		{"a.", false, false},
		{"Chat.message", false, false},
		{"chat.Message", false, false},
		{"CHAT", false, false},
		{"chat message", false, false},
		{"chat.message ", false, false},
		{"chat/message", false, false},
		{"chat.é", false, false},
		{"chat.\x00", false, false},
		{"chat.*", false, true},
		{"*", false, true},
		{">", false, true},
		{"chat.>", false, true},
		{"*.*.>", false, true},
		{"chat.*.created", false, true},
		{"chat.>.created", false, false}, // '>' mid-subject
		{">.chat", false, false},
		{"chat.a*", false, false},
		{"chat.*a", false, false},
		{"chat.>>", false, false},
		{"chat.**", false, false},
		{"chat.>.", false, false},
		{"chat..>", false, false},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 40 {
			name = fmt.Sprintf("%.20s...%d_bytes", name, len(name))
		}
		t.Run(name, func(t *testing.T) {
			check := func(what string, err error, valid bool) {
				t.Helper()
				switch {
				case valid && err != nil:
					t.Errorf("%s(%q) = %v, want nil", what, tt.in, err)
				case !valid && !errors.Is(err, ErrInvalidSubject):
					t.Errorf("%s(%q) = %v, want ErrInvalidSubject", what, tt.in, err)
				}
			}
			check("ValidateTopic", ValidateTopic(tt.in), tt.topic)
			check("ValidateSubject", ValidateSubject(tt.in), tt.subject)
		})
	}
}

func TestValidateErrorIsBounded(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	err := ValidateTopic(huge)
	if !errors.Is(err, ErrInvalidSubject) {
		t.Fatalf("ValidateTopic(1 MiB) = %v, want ErrInvalidSubject", err)
	}
	if len(err.Error()) > 200 {
		t.Errorf("error message is %d bytes; a huge topic must not be copied into it", len(err.Error()))
	}
}

// matchCases is shared by TestMatch and the fuzz seeds.
var matchCases = []struct {
	subject, topic string
	want           bool
}{
	{"chat.message.created", "chat.message.created", true},
	{"chat.message.created", "chat.message.deleted", false},
	{"chat.message", "chat.message.created", false},
	{"chat.message.created", "chat.message", false},
	{"chat.message.created", "chat.message.createdx", false},
	{"chat.*.created", "chat.message.created", true},
	{"chat.*.created", "chat.reaction.created", true},
	{"chat.*.created", "chat.message.deleted", false},
	{"chat.*.created", "chat.created", false},
	{"chat.*", "chat.message", true},
	{"chat.*", "chat.message.created", false},
	{"chat.*", "chat", false},
	{"*", "chat", true},
	{"*", "chat.message", false},
	{"*.*.*", "chat.message.created", true},
	{"chat.>", "chat.message.created", true},
	{"chat.>", "chat.message", true},
	{"chat.>", "chat", false}, // '>' needs at least one token
	{"chatx.>", "chat.message", false},
	{"chat.>", "chatx.message", false},
	{">", "chat", true},
	{">", "chat.message.created", true},
	{"*.>", "chat", false},
	{"*.>", "chat.x", true},
	{"*.*.>", "chat.x.y.z", true},
	// Invalid input never matches.
	{"chat.>.created", "chat.x.created", false},
	{"Chat.message", "Chat.message", false},
	{"chat.*", "chat.*", false},
	{"chat.>", "chat.>", false},
	{"a..b", "a..b", false},
	{"", "", false},
	{"chat.message", "chat.message.", false},
}

func TestMatch(t *testing.T) {
	for _, tt := range matchCases {
		if got := Match(tt.subject, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.subject, tt.topic, got, tt.want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	pattern := strings.Split("chat.*.>", ".")
	allocs := testing.AllocsPerRun(100, func() {
		matchTokens(pattern, "chat.message.created")
	})
	if allocs != 0 {
		t.Errorf("matchTokens allocates %v times per call, want 0", allocs)
	}
}

// The fuzz tests check the hand-written parser and matcher against
// independent, obviously correct versions: regular expressions for syntax
// and a recursive matcher over split tokens.
var (
	topicRE   = regexp.MustCompile(`^[a-z0-9_-]+(\.[a-z0-9_-]+)*$`)
	subjectRE = regexp.MustCompile(`^(>|([a-z0-9_-]+|\*)(\.([a-z0-9_-]+|\*))*(\.>)?)$`)
)

func refValid(re *regexp.Regexp, s string) bool {
	return len(s) <= MaxSubjectLen && re.MatchString(s)
}

func refMatch(pattern, topic []string) bool {
	switch {
	case len(pattern) == 0:
		return len(topic) == 0
	case pattern[0] == ">":
		return len(topic) > 0
	case len(topic) == 0:
		return false
	case pattern[0] != "*" && pattern[0] != topic[0]:
		return false
	}
	return refMatch(pattern[1:], topic[1:])
}

func FuzzValidateSubject(f *testing.F) {
	for _, tt := range matchCases {
		f.Add(tt.subject)
		f.Add(tt.topic)
	}
	f.Fuzz(func(t *testing.T, s string) {
		errT, errS := ValidateTopic(s), ValidateSubject(s)
		if got, want := errT == nil, refValid(topicRE, s); got != want {
			t.Fatalf("ValidateTopic(%q) = %v, reference valid = %v", s, errT, want)
		}
		if got, want := errS == nil, refValid(subjectRE, s); got != want {
			t.Fatalf("ValidateSubject(%q) = %v, reference valid = %v", s, errS, want)
		}
		if errT != nil && !errors.Is(errT, ErrInvalidSubject) {
			t.Fatalf("ValidateTopic(%q) = %v, not ErrInvalidSubject", s, errT)
		}
		if errS != nil && !errors.Is(errS, ErrInvalidSubject) {
			t.Fatalf("ValidateSubject(%q) = %v, not ErrInvalidSubject", s, errS)
		}
		if errT == nil && !Match(s, s) {
			t.Fatalf("valid topic %q does not match itself", s)
		}
	})
}

func FuzzMatch(f *testing.F) {
	for _, tt := range matchCases {
		f.Add(tt.subject, tt.topic)
	}
	f.Fuzz(func(t *testing.T, subject, topic string) {
		got := Match(subject, topic)
		want := refValid(subjectRE, subject) && refValid(topicRE, topic) &&
			refMatch(strings.Split(subject, "."), strings.Split(topic, "."))
		if got != want {
			t.Fatalf("Match(%q, %q) = %v, reference = %v", subject, topic, got, want)
		}
	})
}
