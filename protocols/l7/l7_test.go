package l7

import (
	"reflect"
	"testing"
)

// fill sets every field of v (a struct, recursively) to a non-zero value.
func fill(t *testing.T, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Array:
		for i := range v.Len() {
			fill(t, v.Index(i), path)
		}
	case reflect.Slice:
		v.Set(reflect.ValueOf([]byte("x")))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint8:
		v.SetUint(1)
	default:
		t.Fatalf("fill: field %s of kind %s: teach this test (and Reset) about it", path, v.Kind())
	}
}

// TestResetClearsEveryField: a Frame with every field set, resources up to
// NMore, is the zero Frame (with its direction) after Reset — also for a
// field added later, which fill sets and Reset must then clear.
func TestResetClearsEveryField(t *testing.T) {
	for _, n := range []int{0, 1, len(Frame{}.More)} {
		var f Frame
		fill(t, reflect.ValueOf(&f).Elem(), "Frame")
		for i := n; i < len(f.More); i++ {
			f.More[i] = nil // never set past NMore (AddResource)
		}
		f.NMore = n
		f.Reset(DirReply)
		if want := (Frame{Dir: DirReply}); !reflect.DeepEqual(f, want) {
			t.Errorf("NMore %d: after Reset %+v, want %+v", n, f, want)
		}
	}
	// A corrupt NMore does not make Reset panic.
	for _, n := range []int{-1, len(Frame{}.More) + 1} {
		f := Frame{NMore: n}
		f.Reset(DirRequest)
		if f.NMore != 0 {
			t.Errorf("NMore %d: not cleared", n)
		}
	}
}

// TestAddResource: resources go to Resource, then More, then Overflow.
func TestAddResource(t *testing.T) {
	var f Frame
	for i := range MaxResources + 1 {
		f.AddResource([]byte{byte('a' + i)})
	}
	if string(f.Resource) != "a" || f.NMore != MaxResources-1 || !f.Overflow || string(f.More[f.NMore-1]) != string(rune('a'+MaxResources-1)) {
		t.Errorf("after %d resources: %+v", MaxResources+1, f)
	}
	var got []string
	f.Resources(func(r []byte) bool { got = append(got, string(r)); return true })
	if len(got) != MaxResources {
		t.Errorf("Resources gave %d, want %d", len(got), MaxResources)
	}
}

var benchTable, benchVerb = []byte("t"), []byte("SELECT")

// BenchmarkReset: a typical message's frame (a verb, one resource) reset.
func BenchmarkReset(b *testing.B) {
	var f Frame
	b.ReportAllocs()
	for b.Loop() {
		f.AddResource(benchTable)
		f.Verb = benchVerb
		f.Reset(DirRequest)
	}
}
