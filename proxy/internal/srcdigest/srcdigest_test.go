package srcdigest

import (
	"embed"
	"testing"
)

//go:embed srcdigest.go srcdigest_test.go
var files embed.FS

func TestOf(t *testing.T) {
	a := Of(files, []string{"srcdigest.go"})
	if a == Of(files, []string{"srcdigest_test.go"}) {
		t.Fatal("two files, one digest")
	}
	if a != Of(files, []string{"srcdigest.go"}) {
		t.Fatal("one file, two digests")
	}
	if Of(files, []string{"srcdigest.go", "srcdigest_test.go"}) == Of(files, []string{"srcdigest_test.go", "srcdigest.go"}) {
		t.Fatal("the order of the files does not count")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a file not embedded did not panic")
		}
	}()
	Of(files, []string{"missing.go"})
}

func TestCheckListed(t *testing.T) {
	if err := CheckListed(".", []string{"srcdigest.go"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{nil, {"srcdigest.go", "other.go"}, {"srcdigest_test.go"}} {
		if CheckListed(".", bad) == nil {
			t.Errorf("%v accepted as the package's sources", bad)
		}
	}
}
