package main

// Packages (kurtosis.yml), locators and sandboxed file reads.
//
// A locator is "./x.star", "x.star" or "../lib/x.star" (relative to the
// calling file's directory, staying in its package), "/x.star" (from the
// package root), or "github.com/org/repo/path" (the package whose name is
// the longest prefix: the main package, its `replace` entries, and the
// packages found in package_dirs). A version suffix ("@1.2.0" on any path
// component) is ignored: packages are local copies. Files are read only
// inside their package root, symlinks resolved.

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

type pkg struct {
	name    string // kurtosis.yml name ("" for a single script)
	dir     string // as given, cleaned
	root    string // dir with symlinks resolved
	main    bool
	replace map[string]string // the main package's replace entries
}

type fileRef struct {
	pkg *pkg
	rel string // slash-separated, relative to pkg.root; "" is the root
}

// display is the name used in positions: package-relative in the main
// package, the locator elsewhere.
func (f fileRef) display() string {
	if f.pkg.main || f.pkg.name == "" {
		return f.rel
	}
	if f.rel == "" {
		return f.pkg.name
	}
	return f.pkg.name + "/" + f.rel
}

func (f fileRef) abs() string { return filepath.Join(f.pkg.root, filepath.FromSlash(f.rel)) }

type kurtosisYML struct {
	Name        string            `yaml:"name"`
	Description string            `yaml:"description"`
	Replace     map[string]string `yaml:"replace"`
}

// packageError is an error of kind "package".
func packageError(format string, a ...interface{}) *hostError {
	return &hostError{kind: "package", msg: fmt.Sprintf(format, a...)}
}

func readKurtosisYML(dir string) (*kurtosisYML, error) {
	p := filepath.Join(dir, "kurtosis.yml")
	data, err := os.ReadFile(p)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, packageError("%s has no kurtosis.yml: a package is a folder with kurtosis.yml", dir)
		}
		return nil, packageError("cannot read %s: %v", p, err)
	}
	var y kurtosisYML
	if err := yaml.Unmarshal(data, &y); err != nil {
		return nil, packageError("%s: %v", p, err)
	}
	y.Name = strings.TrimSpace(y.Name)
	if y.Name == "" {
		return nil, packageError("%s: `name:` is missing (the package's locator, e.g. github.com/org/repo)", p)
	}
	return &y, nil
}

func loadPackage(dir string, main bool) (*pkg, error) {
	dir = filepath.Clean(dir)
	y, err := readKurtosisYML(dir)
	if err != nil {
		return nil, err
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, packageError("cannot open package %s: %v", dir, err)
	}
	p := &pkg{name: strings.TrimSuffix(stripVersion(y.Name), "/"), dir: dir, root: root, main: main}
	if main {
		p.replace = y.Replace
	}
	return p, nil
}

type resolver struct {
	main        *pkg
	packageDirs []string
	scanned     bool
	found       []*pkg          // packages in package_dirs, sorted by name
	notes       []string        // what each package dir held, for errors
	byRoot      map[string]*pkg // replace targets, by root
}

func newResolver(main *pkg, packageDirs []string) *resolver {
	return &resolver{main: main, packageDirs: packageDirs, byRoot: map[string]*pkg{}}
}

// scan finds the packages of package_dirs (once, on first need): a dir
// that is itself a package, or the packages up to 3 levels below it.
func (r *resolver) scan() {
	if r.scanned {
		return
	}
	r.scanned = true
	for _, d := range r.packageDirs {
		var names []string
		var walk func(dir string, depth int)
		walk = func(dir string, depth int) {
			if _, err := os.Stat(filepath.Join(dir, "kurtosis.yml")); err == nil {
				p, err := loadPackage(dir, false)
				if err != nil {
					names = append(names, fmt.Sprintf("invalid package %s: %v", dir, err))
					return
				}
				r.found = append(r.found, p)
				names = append(names, p.name)
				return
			}
			if depth == 3 {
				return
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				return
			}
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") || e.Name() == "node_modules" {
					continue
				}
				sub := filepath.Join(dir, e.Name())
				if fi, err := os.Stat(sub); err == nil && fi.IsDir() {
					walk(sub, depth+1)
				}
			}
		}
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			r.notes = append(r.notes, fmt.Sprintf("package dir %s (not a folder)", d))
			continue
		}
		walk(filepath.Clean(d), 0)
		if len(names) == 0 {
			r.notes = append(r.notes, fmt.Sprintf("package dir %s (no packages)", d))
		} else {
			r.notes = append(r.notes, fmt.Sprintf("package dir %s (%s)", d, strings.Join(names, ", ")))
		}
	}
	sort.SliceStable(r.found, func(i, j int) bool { return r.found[i].name < r.found[j].name })
}

// stripVersion drops "@version" from every path component.
func stripVersion(loc string) string {
	if !strings.Contains(loc, "@") {
		return loc
	}
	parts := strings.Split(loc, "/")
	for i, c := range parts {
		if j := strings.IndexByte(c, '@'); j >= 0 {
			parts[i] = c[:j]
		}
	}
	return strings.Join(parts, "/")
}

// looksRemote: "github.com/org/repo/x.star" (a first component with a dot,
// and more components), not "x.star" or "lib/x.star".
func looksRemote(loc string) bool {
	i := strings.IndexByte(loc, '/')
	if i <= 0 {
		return false
	}
	first := loc[:i]
	return first != "." && first != ".." && strings.Contains(first, ".")
}

func hasPrefixPath(loc, prefix string) bool {
	return loc == prefix || strings.HasPrefix(loc, prefix+"/")
}

// resolve maps a locator used in file `from` to a file of some package.
func (r *resolver) resolve(from fileRef, loc string) (fileRef, error) {
	if loc == "" {
		return fileRef{}, packageError("empty locator")
	}
	if strings.HasPrefix(loc, "/") {
		rel := path.Clean(strings.TrimLeft(loc, "/"))
		if rel == "." {
			rel = ""
		}
		return fileRef{pkg: from.pkg, rel: rel}, nil
	}
	if looksRemote(loc) {
		ref, err := r.resolveRemote(stripVersion(loc), loc, 0)
		if err == nil {
			return ref, nil
		}
		// "config.d/x": a relative path that only looks like a locator.
		if rel, ok := relativeIn(from, loc); ok {
			if _, serr := os.Stat(fileRef{pkg: from.pkg, rel: rel}.abs()); serr == nil {
				return fileRef{pkg: from.pkg, rel: rel}, nil
			}
		}
		return fileRef{}, err
	}
	rel, ok := relativeIn(from, loc)
	if !ok {
		return fileRef{}, packageError("locator %q leaves its package (%s)", loc, pkgLabel(from.pkg))
	}
	return fileRef{pkg: from.pkg, rel: rel}, nil
}

func relativeIn(from fileRef, loc string) (string, bool) {
	rel := path.Join(path.Dir(from.rel), loc)
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	if rel == "." {
		rel = ""
	}
	return rel, true
}

func pkgLabel(p *pkg) string {
	if p.name == "" {
		return p.dir
	}
	return p.name
}

func (r *resolver) resolveRemote(loc, original string, depth int) (fileRef, error) {
	if depth > 8 {
		return fileRef{}, packageError("locator %q: replace entries loop", original)
	}
	bestLen, bestKind := -1, 0 // kind: 1 found package, 2 main, 3 replace
	var bestPkg *pkg
	var bestReplace string
	consider := func(name string, kind int) bool {
		if name == "" || !hasPrefixPath(loc, name) {
			return false
		}
		if len(name) > bestLen || (len(name) == bestLen && kind > bestKind) {
			bestLen, bestKind = len(name), kind
			return true
		}
		return false
	}
	if r.main.name != "" && consider(r.main.name, 2) {
		bestPkg = r.main
	}
	for prefix := range r.main.replace {
		p := strings.TrimSuffix(stripVersion(prefix), "/")
		if consider(p, 3) {
			bestReplace = prefix
		}
	}
	r.scan()
	for _, p := range r.found {
		if consider(p.name, 1) {
			bestPkg = p
		}
	}
	if bestLen < 0 {
		return fileRef{}, r.notFound(original)
	}
	rest := strings.TrimPrefix(loc[bestLen:], "/")
	if bestKind == 3 {
		target := r.main.replace[bestReplace]
		prefix := strings.TrimSuffix(stripVersion(bestReplace), "/")
		if strings.HasPrefix(target, "/") || strings.HasPrefix(target, ".") {
			dir := target
			if !filepath.IsAbs(dir) {
				dir = filepath.Join(r.main.dir, dir)
			}
			p, err := r.replacePackage(prefix, dir)
			if err != nil {
				return fileRef{}, packageError("locator %q: replace %s -> %s: %v", original, bestReplace, target, err)
			}
			return r.inPackage(p, rest, original)
		}
		next := strings.TrimSuffix(stripVersion(target), "/")
		if rest != "" {
			next += "/" + rest
		}
		return r.resolveRemote(next, original, depth+1)
	}
	return r.inPackage(bestPkg, rest, original)
}

func (r *resolver) inPackage(p *pkg, rest, original string) (fileRef, error) {
	for _, c := range strings.Split(rest, "/") {
		if c == ".." {
			return fileRef{}, packageError("locator %q leaves its package (%s)", original, pkgLabel(p))
		}
	}
	rel := path.Clean(rest)
	if rel == "." {
		rel = ""
	}
	return fileRef{pkg: p, rel: rel}, nil
}

// replacePackage is the package at a local replace target, named by the
// replaced locator prefix.
func (r *resolver) replacePackage(prefix, dir string) (*pkg, error) {
	dir = filepath.Clean(dir)
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	if root == r.main.root {
		return r.main, nil
	}
	if p, ok := r.byRoot[root]; ok {
		return p, nil
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a folder", dir)
	}
	p := &pkg{name: prefix, dir: dir, root: root}
	r.byRoot[root] = p
	return p, nil
}

func (r *resolver) notFound(loc string) error {
	var places []string
	if r.main.name != "" {
		places = append(places, fmt.Sprintf("the main package %s (%s)", r.main.name, r.main.dir))
	} else {
		places = append(places, fmt.Sprintf("the script's folder %s (no package name)", r.main.dir))
	}
	if len(r.main.replace) == 0 {
		places = append(places, "replace entries (none)")
	} else {
		var reps []string
		for k, v := range r.main.replace {
			reps = append(reps, k+" -> "+v)
		}
		sort.Strings(reps)
		places = append(places, "replace entries ("+strings.Join(reps, ", ")+")")
	}
	if len(r.packageDirs) == 0 {
		places = append(places, "package_dirs (none)")
	} else {
		places = append(places, r.notes...)
	}
	return packageError("no package provides %q; looked in %s", loc, strings.Join(places, "; "))
}

// secure returns the real path of f, checked to stay inside its package.
func (r *resolver) secure(f fileRef, what string) (string, error) {
	abs := f.abs()
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if os.IsNotExist(err) {
			return "", packageError("%s: %s does not exist (looked for %s in package %s)", what, f.display(), abs, pkgLabel(f.pkg))
		}
		return "", packageError("%s: cannot open %s: %v", what, f.display(), err)
	}
	if !within(real, f.pkg.root) {
		return "", packageError("%s: %s resolves to %s, outside its package %s", what, f.display(), real, f.pkg.root)
	}
	return real, nil
}

func within(p, root string) bool {
	if p == root {
		return true
	}
	if root == string(filepath.Separator) {
		return true
	}
	return strings.HasPrefix(p, root+string(filepath.Separator))
}

// readFile reads a regular file of at most max bytes.
func readFile(real, display string, max int64) ([]byte, error) {
	fi, err := os.Stat(real)
	if err != nil {
		return nil, packageError("cannot read %s: %v", display, err)
	}
	if fi.IsDir() {
		return nil, packageError("cannot read %s: it is a folder", display)
	}
	if !fi.Mode().IsRegular() {
		return nil, packageError("cannot read %s: not a regular file", display)
	}
	if fi.Size() > max {
		return nil, &hostError{kind: "limit", msg: fmt.Sprintf("%s is %d bytes, more than max_file_bytes (%d)", display, fi.Size(), max)}
	}
	data, err := os.ReadFile(real)
	if err != nil {
		return nil, packageError("cannot read %s: %v", display, err)
	}
	return data, nil
}

type uploadFile struct {
	path string
	mode int64
	data []byte
}

// collectFiles reads a file, or the regular files of a folder tree (sorted
// by path; symlinks followed when they stay in the package), with a budget
// of max bytes in all.
func collectFiles(real, display, root string, budget int64) ([]uploadFile, int64, error) {
	fi, err := os.Stat(real)
	if err != nil {
		return nil, 0, packageError("upload_files: cannot read %s: %v", display, err)
	}
	var total int64
	add := func(files []uploadFile, p, rel string, fi os.FileInfo) ([]uploadFile, error) {
		total += fi.Size()
		if total > budget {
			return nil, &hostError{kind: "limit", msg: fmt.Sprintf("upload_files: %s takes more than the %d bytes left of max_file_bytes", display, budget)}
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, packageError("upload_files: cannot read %s: %v", rel, err)
		}
		return append(files, uploadFile{path: rel, mode: int64(fi.Mode().Perm()), data: data}), nil
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return nil, 0, packageError("upload_files: %s is not a regular file", display)
		}
		files, err := add(nil, real, filepath.Base(real), fi)
		return files, total, err
	}
	var files []uploadFile
	err = filepath.Walk(real, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return packageError("upload_files: %v", err)
		}
		rel, _ := filepath.Rel(real, p)
		rel = filepath.ToSlash(rel)
		if info.IsDir() || rel == "." {
			return nil
		}
		if info.Mode()&os.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(p)
			if err != nil || !within(target, root) {
				return nil // dangling or outside the package: skipped
			}
			ti, err := os.Stat(target)
			if err != nil || !ti.Mode().IsRegular() {
				return nil
			}
			files, err = add(files, target, rel, ti)
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		files, err = add(files, p, rel, info)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	return files, total, nil
}
