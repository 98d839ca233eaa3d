package files

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/elph-server/elph/platform/store"
	"github.com/elph-server/elph/platform/store/storetest"
)

// testTime has nanoseconds and a zone, so the tests also check that times
// come back as UTC microseconds.
var testTime = time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("MSK", 3*3600))

func testFile(id string) File {
	return File{
		ID: id, OwnerID: 42, Name: "Отчёт за май.pdf", Size: 1234, ContentType: "application/pdf",
		SHA256: strings.Repeat("ab", 32), BlobKey: "f/ab/" + strings.Repeat("0", 32), CreatedAt: testTime,
	}
}

func TestStoreInsertGet(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)

		plain := testFile("AAAAAAAAAAAAAAAAAAAAAA")
		image := testFile("BBBBBBBBBBBBBBBBBBBBBB")
		image.Name, image.ContentType = strings.Repeat("ё", MaxNameChars-4)+".png", "image/png"
		image.ThumbKey, image.Width, image.Height = "t/cd/"+strings.Repeat("1", 32), 4000, 3000
		for _, f := range []*File{&plain, &image} {
			if err := s.Insert(ctx, f); err != nil {
				t.Fatalf("Insert(%s): %v", f.ID, err)
			}
			if want := testTime.UTC().Truncate(time.Microsecond); !f.CreatedAt.Equal(want) || f.CreatedAt.Location() != time.UTC {
				t.Errorf("Insert set CreatedAt %v, want %v", f.CreatedAt, want)
			}
			got, err := s.Get(ctx, f.ID)
			if err != nil {
				t.Fatalf("Get(%s): %v", f.ID, err)
			}
			if got != *f {
				t.Errorf("Get(%s)\n got %+v\nwant %+v", f.ID, got, *f)
			}
		}
	})
}

func TestStoreInsertDefaultsAndConflicts(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)

		f := testFile("CCCCCCCCCCCCCCCCCCCCCC")
		f.CreatedAt = time.Time{}
		before := time.Now().Add(-time.Second)
		if err := s.Insert(ctx, &f); err != nil {
			t.Fatal(err)
		}
		if f.CreatedAt.Before(before) || f.CreatedAt.Location() != time.UTC {
			t.Errorf("a zero CreatedAt became %v, want now in UTC", f.CreatedAt)
		}

		again := testFile(f.ID)
		if err := s.Insert(ctx, &again); !errors.Is(err, ErrConflict) {
			t.Errorf("Insert of a taken id: %v, want ErrConflict", err)
		}

		for name, edit := range map[string]func(*File){
			"no id":         func(f *File) { f.ID = "" },
			"no name":       func(f *File) { f.Name = "" },
			"long name":     func(f *File) { f.Name = strings.Repeat("я", MaxNameChars+1) },
			"invalid name":  func(f *File) { f.Name = "a\xffb" },
			"no blob key":   func(f *File) { f.BlobKey = "" },
			"short sha256":  func(f *File) { f.SHA256 = "abc" },
			"negative size": func(f *File) { f.Size = -1 },
			"long type":     func(f *File) { f.ContentType = "application/" + strings.Repeat("x", 250) },
		} {
			bad := testFile("DDDDDDDDDDDDDDDDDDDDDD")
			edit(&bad)
			if err := s.Insert(ctx, &bad); err == nil {
				t.Errorf("%s: Insert succeeded", name)
			}
		}
		if _, err := s.Get(ctx, "DDDDDDDDDDDDDDDDDDDDDD"); !errors.Is(err, ErrNotFound) {
			t.Errorf("a refused insert left a row: %v", err)
		}
	})
}

// TestStoreIDsAreCaseSensitive guards the utf8mb4_bin collation of the
// id column: base64url ids differing only in case are different files.
func TestStoreIDsAreCaseSensitive(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		upper := testFile("ABCDEFGHIJKLMNOPQRSTUV")
		if err := s.Insert(ctx, &upper); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, strings.ToLower(upper.ID)); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of the id in lower case: %v, want ErrNotFound", err)
		}
		lower := testFile(strings.ToLower(upper.ID))
		lower.OwnerID = 7
		if err := s.Insert(ctx, &lower); err != nil {
			t.Fatalf("Insert of the id in lower case: %v", err)
		}
		for _, want := range []File{upper, lower} {
			got, err := s.Get(ctx, want.ID)
			if err != nil || got.OwnerID != want.OwnerID {
				t.Errorf("Get(%s) = owner %d, %v; want owner %d", want.ID, got.OwnerID, err, want.OwnerID)
			}
		}
		if err := s.Delete(ctx, lower.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, upper.ID); err != nil {
			t.Errorf("deleting the lower-case id removed the upper-case one: %v", err)
		}
	})
}

func TestStoreDelete(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		s := NewStore(db)
		f := testFile("EEEEEEEEEEEEEEEEEEEEEE")
		if err := s.Insert(ctx, &f); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, f.ID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := s.Get(ctx, f.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get after Delete: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, f.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("second Delete: %v, want ErrNotFound", err)
		}
	})
}
