#!/usr/bin/env python3
"""Generate cib/src/schema_table.rs from Pacemaker's RELAX NG schemas.

Usage: python3 tools/gen_schema_table.py [RNG_DIR] > cib/src/schema_table.rs
       (RNG_DIR defaults to /usr/share/pacemaker)

For every schema pacemaker-1.0 .. pacemaker-3.9 this walks the grammar
(define/ref, include with overrides, nested grammars with parentRef,
externalRef) and records, for each element name under each parent element
name, which attributes it may carry, which child elements it may contain,
and what values each attribute takes (enumerated values and XSD datatypes;
plain text means any value). The output is the union over all versions.
Elements whose content is open (anyName) are marked open: anything goes
below them. Only element/attribute names, enumerated values and datatype
names are emitted; nothing else from the schemas.
"""

import os
import re
import sys
import xml.etree.ElementTree as ET

NS = "{http://relaxng.org/ns/structure/1.0}"
TYPES = ["integer", "nonNegativeInteger", "positiveInteger", "boolean", "ID", "IDREF"]


def tag(n):
    return n.tag[len(NS):] if n.tag.startswith(NS) else n.tag


class Grammar:
    def __init__(self, parent):
        self.parent = parent
        self.defines = {}  # name -> [pattern element]
        self.start = []

    def add(self, name, node, override=False):
        if override:
            self.defines[name] = [node]
        else:
            self.defines.setdefault(name, []).append(node)


class Walker:
    def __init__(self, rng_dir):
        self.dir = rng_dir
        # (parent, name) -> {"attrs": {attr: spec}, "children": set, "open": bool}
        self.table = {}
        self.memo = {}  # (id(node), id(grammar)) -> result dict
        self.keep = []  # keep grammars alive so id() stays unique

    def load(self, href, parent):
        root = ET.parse(os.path.join(self.dir, href)).getroot()
        g = Grammar(parent)
        self.keep.append(g)
        self.fill(g, root, set())
        return g

    def fill(self, g, gram, overridden):
        """Add a <grammar> element's start/defines into g (names in `overridden` are skipped)."""
        for c in gram:
            t = tag(c)
            if t == "start":
                if "start" not in overridden:
                    g.start.extend(list(c))
            elif t == "define":
                if c.get("name") not in overridden:
                    g.add(c.get("name"), c)
            elif t == "div":
                self.fill(g, c, overridden)
            elif t == "include":
                over = set()
                for o in c:
                    if tag(o) == "define":
                        over.add(o.get("name"))
                    elif tag(o) == "start":
                        over.add("start")
                inc = ET.parse(os.path.join(self.dir, c.get("href"))).getroot()
                self.fill(g, inc, overridden | over)
                for o in c:
                    if tag(o) == "define" and o.get("name") not in overridden:
                        g.defines[o.get("name")] = [o]
                    elif tag(o) == "start" and "start" not in overridden:
                        g.start = list(o)

    # -- content walking ------------------------------------------------

    def content(self, nodes, g, acc, seen):
        for n in nodes:
            self.node(n, g, acc, seen)

    def node(self, n, g, acc, seen):
        t = tag(n)
        if t == "element":
            self.element(n, g, acc)
        elif t == "attribute":
            name = n.get("name")
            if name is None:
                acc["open_attrs"] = True
                return
            name = name.strip()  # one schema spells an attribute "id "
            if not name:
                return
            spec = acc["attrs"].setdefault(name, {"any": False, "values": set(), "types": set()})
            body = [c for c in n if tag(c) not in ("name",)]
            if not body:
                spec["any"] = True
            for c in body:
                self.value(c, g, spec, set())
        elif t == "ref":
            key = (id(g), n.get("name"))
            if key in seen:
                return
            for d in g.defines.get(n.get("name"), []):
                self.content(list(d), g, acc, seen | {key})
        elif t == "parentRef":
            p = g.parent
            key = (id(p), n.get("name"))
            if p is None or key in seen:
                return
            for d in p.defines.get(n.get("name"), []):
                self.content(list(d), p, acc, seen | {key})
        elif t == "externalRef":
            eg = self.load(n.get("href"), g)
            self.content(eg.start, eg, acc, seen)
        elif t == "grammar":
            ng = Grammar(g)
            self.keep.append(ng)
            self.fill(ng, n, set())
            self.content(ng.start, ng, acc, seen)
        elif t in ("choice", "group", "interleave", "optional", "zeroOrMore", "oneOrMore", "mixed"):
            self.content(list(n), g, acc, seen)
        # text, empty, notAllowed, data, value, list: nothing to record

    def element(self, n, g, acc):
        name = n.get("name")
        if name is None:
            acc["open"] = True
            return
        key = (id(n), id(g))
        acc["children"].add(name)
        acc.setdefault("kids", []).append((name, key))
        if key in self.memo:
            return
        res = {"name": name, "attrs": {}, "children": set(), "open": False, "open_attrs": False, "kids": []}
        self.memo[key] = res
        body = [c for c in n if tag(c) != "name"]
        self.content(body, g, res, set())

    def value(self, n, g, spec, seen):
        t = tag(n)
        if t == "value":
            if n.get("type") == "string" or n.get("type") is None:
                spec["values"].add((n.text or "").strip())
        elif t == "data":
            ty = n.get("type")
            if ty in TYPES:
                spec["types"].add(ty)
            else:
                spec["any"] = True  # string (patterns and excepts are not checked)
        elif t == "text":
            spec["any"] = True
        elif t in ("choice", "group", "optional", "oneOrMore", "zeroOrMore"):
            for c in n:
                self.value(c, g, spec, seen)
        elif t == "ref" or t == "parentRef":
            gg = g if t == "ref" else g.parent
            key = (id(gg), n.get("name"))
            if gg is None or key in seen:
                return
            for d in gg.defines.get(n.get("name"), []):
                for c in d:
                    self.value(c, gg, spec, seen | {key})
        else:
            spec["any"] = True  # list, empty or anything unexpected: do not check

    def run(self, top):
        g = self.load(top, None)
        acc = {"attrs": {}, "children": set(), "open": False, "open_attrs": False, "kids": []}
        self.content(g.start, g, acc, set())
        # Register every element under each parent it was found under.
        stack = [("", k) for _, k in acc["kids"]]
        done = set()
        while stack:
            parent, key = stack.pop()
            if (parent, key) in done:
                continue
            done.add((parent, key))
            res = self.memo[key]
            name = res["name"]
            ent = self.table.setdefault((parent, name), {"attrs": {}, "children": set(), "open": False})
            if res["open_attrs"]:
                ent["attrs"]["*"] = {"any": True, "values": set(), "types": set()}
            if res["open"]:
                ent["open"] = True
            ent["children"] |= res["children"]
            for a, s in res["attrs"].items():
                e = ent["attrs"].setdefault(a, {"any": False, "values": set(), "types": set()})
                e["any"] |= s["any"]
                e["values"] |= s["values"]
                e["types"] |= s["types"]
            for _, k in res["kids"]:
                stack.append((name, k))


def versions(rng_dir):
    out = []
    for f in os.listdir(rng_dir):
        m = re.fullmatch(r"pacemaker-(\d+)\.(\d+)\.rng", f)
        if m and (int(m[1]), int(m[2])) <= (3, 9):
            out.append(((int(m[1]), int(m[2])), f))
    return [f for _, f in sorted(out)]


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def emit(table, files):
    specs = {}

    def spec_name(s):
        if s["any"]:
            return "ANY"
        key = (tuple(sorted(s["values"])), tuple(t for t in TYPES if t in s["types"]))
        if key not in specs:
            specs[key] = "V%d" % len(specs)
        return specs[key]

    rows = []
    for (parent, name) in sorted(table):
        ent = table[(parent, name)]
        attrs = ", ".join("(%s, %s)" % (rust_str(a), spec_name(s)) for a, s in sorted(ent["attrs"].items()))
        kids = ", ".join(rust_str(c) for c in sorted(ent["children"]))
        rows.append("    E { parent: %s, name: %s, open: %s,\n        attrs: &[%s],\n        children: &[%s] },"
                    % (rust_str(parent), rust_str(name), "true" if ent["open"] else "false", attrs, kids))
    out = []
    out.append("// @generated by tools/gen_schema_table.py from Pacemaker's RELAX NG schemas")
    out.append("// (%s .. %s and the sub-schemas they include). Do not edit by hand." % (files[0], files[-1]))
    out.append("// Regenerate: python3 tools/gen_schema_table.py /usr/share/pacemaker > cib/src/schema_table.rs")
    out.append("// Only names are recorded: which element may appear under which parent, which")
    out.append("// attributes it may carry, and each attribute's enumerated values and XSD types,")
    out.append("// as the union over all those schema versions.")
    out.append("")
    out.append("use super::{Val, E, ANY};")
    out.append("")
    for (values, types), nm in sorted(specs.items(), key=lambda kv: int(kv[1][1:])):
        t = " | ".join("T_" + x.upper() for x in types) or "0"
        v = ", ".join(rust_str(x) for x in values)
        out.append("const %s: Val = Val { any: false, values: &[%s], types: %s };" % (nm, v, t))
    out.append("")
    out.append("#[rustfmt::skip]")
    out.append("pub(super) static ELEMENTS: &[E] = &[")
    out.extend(rows)
    out.append("];")
    types = "\n".join("pub(super) const T_%s: u8 = %d;" % (t.upper(), 1 << i) for i, t in enumerate(TYPES))
    out.insert(9, types + "\n")
    return "\n".join(out) + "\n"


def main():
    rng_dir = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/pacemaker"
    files = versions(rng_dir)
    if not files:
        sys.exit("no pacemaker-X.Y.rng in %s" % rng_dir)
    w = Walker(rng_dir)
    for f in files:
        w.run(f)
    sys.stdout.write(emit(w.table, files))


if __name__ == "__main__":
    main()
