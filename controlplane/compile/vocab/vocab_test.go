package vocab

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIDLike(t *testing.T) {
	for seg, want := range map[string]bool{
		"1": true, "42": true, "0007": true,
		"3f2504e0-4f89-11d3-9a0c-0305e82c3301": true, "3F2504E0-4F89-11D3-9A0C-0305E82C3301": true,
		"deadbeef01": true, "a1b2c3d4": true, "5d41402abc4b2a76b9719d911017c592": true,
		"eyJhbGciOiJIUzI1NiJ9": true, "q2Xz7_kLmP0aB9rT": true, "Zm9vYmFyMTIzNDU2Nzg5": true, "3f2504e0-4f89-11d3-9a0c-0305e82c330": true,
		"": false, "users": false, "app.js": false, "deadbeef": false, "abc123": false,
		"v2": false, "report-2024": false, "getUserProfileSettingsV2": false, "Order2023Invoice": false,
		"my-long-article-title-2024-01-15": false, "dGhpcyBpcyBhIHRva2VuMTIz": false, // too few letter-digit switches
		"static": false, "a1b2c3d": false,
	} {
		if got := IDLike(seg); got != want {
			t.Errorf("IDLike(%q) = %v, want %v", seg, got, want)
		}
	}
}

func TestGeneralizePath(t *testing.T) {
	cases := []struct {
		in        string
		truncated bool
		want      string
		ok        bool
	}{
		{"/users/1", false, "/users/{id}", true},
		{"/users/42/orders/7?expand=1", false, "/users/{id}/orders/{id}", true},
		{"/users/3f2504e0-4f89-11d3-9a0c-0305e82c3301", false, "/users/{id}", true},
		{"/static/app.js", false, "/static/app.js", true},
		{"/", false, "/", true},
		{"/a//b/", false, "/a//b/", true},
		{"/x#frag", false, "/x", true},
		{"/files/*", false, "/files/{id}", true},
		{"/files/{x}", false, "/files/{id}", true},
		{"/files/my file", false, "/files/{id}", true},
		{"/files/\xff", false, "/files/{id}", true},
		{"/docs/chapter-one/sect", true, "/docs/chapter-one/{*}", true},
		{"/docsdocsdocs", true, "", false},
		{"/docs/", true, "/docs/{*}", true},
		{"/a/b?q=123456", true, "/a/b", true},
		{strings.Repeat("/a", 70), false, strings.Repeat("/a", 70), true},
		{strings.Repeat("/a", 70) + "/1", false, strings.Repeat("/a", 62) + "/{*}", true},
		{strings.Repeat("/1", 63), false, strings.Repeat("/{id}", 63), true},
		{strings.Repeat("/1", 64), false, strings.Repeat("/{id}", 62) + "/{*}", true},
		{"", false, "", false},
		{"users/1", false, "", false},
		{"?x", false, "", false},
	}
	for _, c := range cases {
		got, ok := GeneralizePath(c.in, c.truncated)
		if got != c.want || ok != c.ok {
			t.Errorf("GeneralizePath(%q, %v) = %q, %v; want %q, %v", c.in, c.truncated, got, ok, c.want, c.ok)
		}
	}
}

func TestPathCovers(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"/x", "/x", true},
		{"/x", "/y", false},
		{"/users/{id}", "/users/1", true},
		{"/users/{id}", "/users/{user}", true},
		{"/users/{id}", "/users/", false},
		{"/users/{id}", "/users/1/orders", false},
		{"/users/{id}", "/users", false},
		{"/users/1", "/users/{id}", false},
		{"/files/{*}", "/files/a", true},
		{"/files/{*}", "/files/a/b/{id}", true},
		{"/files/{*}", "/files/{*}", true},
		{"/files/{*}", "/files/a/{*}", true},
		{"/files/{*}", "/files", false},
		{"/files/a/{*}", "/files/{*}", false},
		{"/{*}", "/", true}, // one empty segment
		{"/static/*", "/static/app.js", true},
		{"/static/*", "/static/", true},
		{"/static/*", "/static", false},
		{"/static/*", "/static/js/*", true},
		{"/static/*", "/static/{id}/x", true},
		{"/static/*", "/{id}/x", false},
		{"/static/*", "/static/{*}", true},
		{"/static/{*}", "/static/*", false},
		{"/{id}/x", "/a/x", true},
		{"/x", "/x/{*}", false},
	}
	for _, c := range cases {
		if got := PathCovers(c.a, c.b); got != c.want {
			t.Errorf("PathCovers(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestCollapsePaths(t *testing.T) {
	slugs := func(n int, format string) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf(format, strings.Repeat(string(rune('a'+i%26)), 3+i/26)))
		}
		return out
	}
	cases := []struct {
		name string
		in   []string
		want []string
	}{
		{"empty", nil, nil},
		{"covered paths dropped", []string{"/users/{id}", "/users/7", "/static/app.js", "/users/{id}"}, []string{"/static/app.js", "/users/{id}"}},
		{"equivalent templates: the smaller stays", []string{"/users/{user}", "/users/{id}"}, []string{"/users/{id}"}},
		{"eight slugs stay", slugs(8, "/blog/%s"), slugs(8, "/blog/%s")},
		{"twenty slugs become a template", append(slugs(20, "/blog/%s"), "/blog", "/static/app.js"), []string{"/blog", "/blog/{id}", "/static/app.js"}},
		{"only paths that share the other segments", append(slugs(9, "/a/%s/x"), "/a/zzz/y", "/b/qqq/x"), []string{"/a/zzz/y", "/a/{id}/x", "/b/qqq/x"}},
		{"cascades", func() []string {
			var out []string
			for i := range 10 {
				for j := range 10 {
					out = append(out, fmt.Sprintf("/t/%c%c%c/s/%c%c%c", 'a'+i, 'a'+i, 'a'+i, 'a'+j, 'a'+j, 'a'+j))
				}
			}
			return out
		}(), []string{"/t/{id}/s/{id}"}},
		{"too many: any path", func() []string {
			var out []string
			for i := range 70 {
				out = append(out, fmt.Sprintf("/p%c%c/q%c%c", 'a'+i%26, 'a'+i/26, 'a'+i%26, 'a'+i/26))
			}
			return out
		}(), nil}, // 70 different first segments: no template, no group, > 64
		{"too many: grouped", func() []string {
			var out []string
			for i := range 40 {
				out = append(out, fmt.Sprintf("/p%c%c/a%c%c", 'a'+i%26, 'a'+i/26, 'a'+i%26, 'a'+i/26), fmt.Sprintf("/p%c%c/b%c%c/c", 'a'+i%26, 'a'+i/26, 'a'+i%26, 'a'+i/26))
			}
			return out
		}(), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := CollapsePaths(slices.Clone(c.in), CollapseThreshold, MaxLearnedPaths)
			if c.name == "too many: grouped" {
				// 40 first segments, each "/pXY/{*}": within the bound.
				if len(got) != 40 || !strings.HasSuffix(got[0], "/{*}") {
					t.Fatalf("got %d paths: %v", len(got), got)
				}
			} else if diff := cmp.Diff(c.want, got); diff != "" {
				t.Fatalf("CollapsePaths (-want +got):\n%s", diff)
			}
			if again := CollapsePaths(slices.Clone(got), CollapseThreshold, MaxLearnedPaths); !slices.Equal(again, got) {
				t.Fatalf("not a fixed point: %v → %v", got, again)
			}
			// Every input path stays covered.
			if got != nil {
				for _, p := range c.in {
					if !slices.ContainsFunc(got, func(q string) bool { return PathCovers(q, p) }) {
						t.Errorf("%q no longer covered by %v", p, got)
					}
				}
			}
		})
	}
}

func TestClassifyPath(t *testing.T) {
	for in, want := range map[string]struct {
		k PathKind
		v string
	}{
		"/x": {PathExact, "/x"}, "/x/*": {PathPrefix, "/x/"}, "/*": {PathPrefix, "/"},
		"/u/{id}": {PathTemplate, "/u/{id}"}, "/f/{*}": {PathTemplate, "/f/{*}"},
	} {
		if k, v := ClassifyPath(in); k != want.k || v != want.v {
			t.Errorf("ClassifyPath(%q) = %v, %q; want %v, %q", in, k, v, want.k, want.v)
		}
	}
}

func TestKafka(t *testing.T) {
	if a, ok := KafkaAPI("PRODUCE"); !ok || a != "Produce" {
		t.Errorf("KafkaAPI(PRODUCE) = %q, %v", a, ok)
	}
	if a, ok := KafkaAPI("apiversions"); !ok || a != "ApiVersions" {
		t.Errorf("KafkaAPI(apiversions) = %q, %v", a, ok)
	}
	if _, ok := KafkaAPI("Gopher"); ok {
		t.Error("KafkaAPI(Gopher) ok")
	}
	for _, role := range KafkaRoles() {
		apis := KafkaRoleAPIs(role)
		if !slices.IsSorted(apis) || !slices.Contains(apis, "Metadata") || !slices.Contains(apis, "ApiVersions") {
			t.Errorf("role %s: %v", role, apis)
		}
		for _, a := range apis {
			if c, ok := KafkaAPI(a); !ok || c != a {
				t.Errorf("role %s: %q is not a Kafka API name", role, a)
			}
		}
	}
	if !slices.Contains(KafkaRoleAPIs("produce"), "Produce") || slices.Contains(KafkaRoleAPIs("produce"), "Fetch") {
		t.Error("produce role")
	}
	if KafkaRoleAPIs("root") != nil {
		t.Error("unknown role")
	}
	for _, verbs := range resourceless {
		for _, v := range verbs {
			if v != strings.ToUpper(v) {
				t.Errorf("resourceless verb %q is not upper case", v)
			}
		}
	}
	for _, a := range resourceless["kafka"] {
		if _, ok := KafkaAPI(a); !ok {
			t.Errorf("resourceless kafka verb %q is not an API", a)
		}
	}
	if !Resourceless("kafka", "Heartbeat") || Resourceless("kafka", "Produce") || Resourceless("sql", "SELECT") || !Resourceless("sql", "commit") {
		t.Error("Resourceless")
	}
}

func TestMongoCommand(t *testing.T) {
	for in, want := range map[string]string{"ISMASTER": "isMaster", "find": "find", "FINDANDMODIFY": "findAndModify", "MYCMD": "mycmd", "myCmd": "myCmd"} {
		if got := MongoCommand(in); got != want {
			t.Errorf("MongoCommand(%q) = %q, want %q", in, got, want)
		}
	}
}
