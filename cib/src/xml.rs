//! A small owned XML tree that keeps everything it read (elements, attribute
//! order, text, comments), so parse-then-write gives back the same document.
//! The typed views in `model` read from this tree; edits go through it too.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::error::CibError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Shared like [`Children`]: copying a list of siblings copies pointers; `&mut` use
    /// goes through `Arc::make_mut` ([`Node::element_mut`]).
    Element(std::sync::Arc<Element>),
    Text(String),
    Comment(String),
    CData(String),
    /// Processing instruction or declaration, kept verbatim (without `<?` `?>`).
    Pi(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Children,
    /// 1-based line of the start tag in the source (0 for built elements).
    pub line: u32,
}

/// An element's child nodes, shared between copies of a document until one of them
/// changes (copy on write): cloning a large CIB to apply one write copies only the path
/// the write touches, and a subtree still shared with the old document is the same
/// without being compared (`Children::shared_with`). Reads go through `Deref` to the
/// list; any `&mut` use unshares this one level.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Children(std::sync::Arc<Vec<Node>>);

impl Children {
    pub fn new() -> Children {
        Children::default()
    }

    /// Whether both lists are one shared list (then they are equal, not compared).
    pub fn shared_with(&self, other: &Children) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }

    /// The list itself, copied only when it is still shared.
    pub fn into_vec(self) -> Vec<Node> {
        std::sync::Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }
}

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::ops::Deref for Children {
    type Target = Vec<Node>;
    fn deref(&self) -> &Vec<Node> {
        &self.0
    }
}

impl std::ops::DerefMut for Children {
    fn deref_mut(&mut self) -> &mut Vec<Node> {
        std::sync::Arc::make_mut(&mut self.0)
    }
}

impl From<Vec<Node>> for Children {
    fn from(v: Vec<Node>) -> Children {
        Children(std::sync::Arc::new(v))
    }
}

impl FromIterator<Node> for Children {
    fn from_iter<I: IntoIterator<Item = Node>>(iter: I) -> Children {
        Children::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a Children {
    type Item = &'a Node;
    type IntoIter = std::slice::Iter<'a, Node>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a mut Children {
    type Item = &'a mut Node;
    type IntoIter = std::slice::IterMut<'a, Node>;
    fn into_iter(self) -> Self::IntoIter {
        std::sync::Arc::make_mut(&mut self.0).iter_mut()
    }
}

impl IntoIterator for Children {
    type Item = Node;
    type IntoIter = std::vec::IntoIter<Node>;
    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

/// Depth-first walk of an element's subtree (see [`Element::iter_descendants`]).
pub struct Descendants<'a> {
    first: Option<&'a Element>,
    stack: Vec<std::slice::Iter<'a, Node>>,
}

impl<'a> Iterator for Descendants<'a> {
    type Item = &'a Element;

    fn next(&mut self) -> Option<&'a Element> {
        if let Some(e) = self.first.take() {
            self.stack.push(e.children.iter());
            return Some(e);
        }
        loop {
            let top = self.stack.last_mut()?;
            match top.next() {
                Some(Node::Element(e)) => {
                    self.stack.push(e.children.iter());
                    return Some(e);
                }
                Some(_) => {}
                None => {
                    self.stack.pop();
                }
            }
        }
    }
}

/// A parsed document: nodes before the root (declaration, comments), the root, nodes after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub prolog: Vec<Node>,
    pub root: Element,
    pub epilog: Vec<Node>,
}

impl Element {
    pub fn new(name: &str) -> Element {
        Element { name: name.to_string(), attrs: Vec::new(), children: Children::new(), line: 0 }
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn set_attr(&mut self, key: &str, value: &str) {
        match self.attrs.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.attrs.push((key.to_string(), value.to_string())),
        }
    }

    pub fn remove_attr(&mut self, key: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == key)?;
        Some(self.attrs.remove(pos).1)
    }

    pub fn id(&self) -> Option<&str> {
        self.attr("id")
    }

    /// Child elements, in document order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(&**e),
            _ => None,
        })
    }

    /// Every element child, each made this tree's own (copied if shared): for changing
    /// them all. To change one, [`Element::find_mut`] or [`Element::element_at_mut`] copy
    /// only that one, keeping the rest shared (and cheap to compare).
    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(Node::element_mut)
    }

    /// The first element child `f` accepts, made this tree's own; the others stay shared.
    pub fn find_mut(&mut self, f: impl Fn(&Element) -> bool) -> Option<&mut Element> {
        let i = self.children.iter().position(|n| matches!(n, Node::Element(e) if f(e)))?;
        self.children[i].element_mut()
    }

    /// The element child at position `p` among the element children, made this tree's own.
    pub fn element_at_mut(&mut self, p: usize) -> Option<&mut Element> {
        let i = self.children.iter().enumerate().filter(|(_, n)| matches!(n, Node::Element(_))).nth(p)?.0;
        self.children[i].element_mut()
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.find_mut(|e| e.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements().filter(move |e| e.name == name)
    }

    pub fn push(&mut self, child: Element) {
        self.children.push(Node::from(child));
    }

    /// Every element of this subtree, depth first, this one included.
    pub fn descendants(&self) -> Vec<&Element> {
        self.iter_descendants().collect()
    }

    /// [`Element::descendants`] without building a list: one stack frame per open level.
    pub fn iter_descendants(&self) -> Descendants<'_> {
        Descendants { first: Some(self), stack: Vec::new() }
    }

    /// Concatenated text content of this element's direct text children.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) | Node::CData(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    pub fn write_to(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("=\"");
            escape_into(v, true, out);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            c.write_to(out);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }

    pub fn to_xml(&self) -> String {
        let mut s = String::new();
        self.write_to(&mut s);
        s
    }
}

impl From<Element> for Node {
    fn from(e: Element) -> Node {
        Node::Element(std::sync::Arc::new(e))
    }
}

impl Node {
    /// The element, unshared from other copies of the document first.
    pub fn element_mut(&mut self) -> Option<&mut Element> {
        match self {
            Node::Element(e) => Some(std::sync::Arc::make_mut(e)),
            _ => None,
        }
    }

    pub fn as_element(&self) -> Option<&Element> {
        match self {
            Node::Element(e) => Some(e),
            _ => None,
        }
    }

    fn write_to(&self, out: &mut String) {
        match self {
            Node::Element(e) => e.write_to(out),
            Node::Text(t) => escape_into(t, false, out),
            Node::Comment(c) => {
                out.push_str("<!--");
                out.push_str(c);
                out.push_str("-->");
            }
            Node::CData(c) => {
                out.push_str("<![CDATA[");
                out.push_str(c);
                out.push_str("]]>");
            }
            Node::Pi(p) => {
                out.push_str("<?");
                out.push_str(p);
                out.push_str("?>");
            }
        }
    }
}

fn escape_into(s: &str, in_attr: bool, out: &mut String) {
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' if in_attr => out.push_str("&quot;"),
            '\n' if in_attr => out.push_str("&#10;"),
            '\t' if in_attr => out.push_str("&#9;"),
            _ => out.push(ch),
        }
    }
}

impl Document {
    pub fn to_xml(&self) -> String {
        let mut s = String::new();
        for n in &self.prolog {
            n.write_to(&mut s);
        }
        self.root.write_to(&mut s);
        for n in &self.epilog {
            n.write_to(&mut s);
        }
        s
    }
}

/// Limits nesting so a hostile document cannot exhaust the stack of later recursive walks.
const MAX_DEPTH: usize = 256;

/// Counts lines incrementally: positions asked for only move forward while parsing.
struct LineCounter<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
}

impl LineCounter<'_> {
    fn at(&mut self, pos: usize) -> u32 {
        let end = pos.min(self.src.len());
        if end < self.pos {
            self.pos = 0;
            self.line = 1;
        }
        self.line += self.src[self.pos..end].iter().filter(|&&b| b == b'\n').count() as u32;
        self.pos = end;
        self.line
    }
}

fn start_element(line: u32, e: &BytesStart) -> Result<Element, CibError> {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let mut el = Element { name, attrs: Vec::new(), children: Children::new(), line };
    for a in e.attributes() {
        let a = a.map_err(|err| CibError::Xml { line, message: err.to_string() })?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|err| CibError::Xml { line, message: err.to_string() })?
            .into_owned();
        if el.attr(&key).is_some() {
            return Err(CibError::Xml { line, message: format!("duplicate attribute '{key}' on <{}>", el.name) });
        }
        el.attrs.push((key, value));
    }
    Ok(el)
}

/// Parse a whole document. Errors carry the line where parsing stopped.
pub fn parse(src: &str) -> Result<Document, CibError> {
    let mut lines = LineCounter { src: src.as_bytes(), pos: 0, line: 1 };
    let mut line_of = |_: &str, pos: usize| lines.at(pos);
    let mut reader = Reader::from_str(src);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut prolog = Vec::new();
    let mut epilog = Vec::new();
    let mut root: Option<Element> = None;

    fn attach(stack: &mut [Element], root_done: bool, prolog: &mut Vec<Node>, epilog: &mut Vec<Node>, n: Node) {
        if let Some(top) = stack.last_mut() {
            top.children.push(n);
        } else if root_done {
            epilog.push(n);
        } else {
            prolog.push(n);
        }
    }

    loop {
        let pos = reader.buffer_position() as usize;
        let ev = reader
            .read_event()
            .map_err(|e| CibError::Xml { line: line_of(src, reader.buffer_position() as usize), message: e.to_string() })?;
        match ev {
            Event::Start(e) => {
                if root.is_some() && stack.is_empty() {
                    return Err(CibError::Xml { line: line_of(src, pos), message: "content after the root element".into() });
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(CibError::Xml { line: line_of(src, pos), message: format!("elements nested deeper than {MAX_DEPTH}") });
                }
                stack.push(start_element(line_of(src, pos), &e)?);
            }
            Event::Empty(e) => {
                let el = start_element(line_of(src, pos), &e)?;
                if stack.is_empty() {
                    if root.is_some() {
                        return Err(CibError::Xml { line: el.line, message: "content after the root element".into() });
                    }
                    root = Some(el);
                } else {
                    stack.last_mut().unwrap().children.push(Node::from(el));
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| CibError::Xml { line: line_of(src, pos), message: "unexpected end tag".into() })?;
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(Node::from(el));
                } else {
                    root = Some(el);
                }
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map_err(|e| CibError::Xml { line: line_of(src, pos), message: e.to_string() })?
                    .into_owned();
                if stack.is_empty() {
                    if !text.trim().is_empty() {
                        return Err(CibError::Xml { line: line_of(src, pos), message: "text outside the root element".into() });
                    }
                    attach(&mut stack, root.is_some(), &mut prolog, &mut epilog, Node::Text(text));
                } else {
                    attach(&mut stack, root.is_some(), &mut prolog, &mut epilog, Node::Text(text));
                }
            }
            Event::CData(t) => {
                let text = String::from_utf8_lossy(&t).into_owned();
                attach(&mut stack, root.is_some(), &mut prolog, &mut epilog, Node::CData(text));
            }
            Event::Comment(t) => {
                let text = String::from_utf8_lossy(&t).into_owned();
                attach(&mut stack, root.is_some(), &mut prolog, &mut epilog, Node::Comment(text));
            }
            Event::Decl(d) => {
                let text = String::from_utf8_lossy(&d).into_owned();
                attach(&mut stack, root.is_some(), &mut prolog, &mut epilog, Node::Pi(text));
            }
            Event::PI(p) => {
                let text = String::from_utf8_lossy(&p).into_owned();
                attach(&mut stack, root.is_some(), &mut prolog, &mut epilog, Node::Pi(text));
            }
            Event::DocType(_) => {
                return Err(CibError::Xml { line: line_of(src, pos), message: "DOCTYPE is not allowed in a CIB".into() });
            }
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(CibError::Xml { line: open.line, message: format!("<{}> is never closed", open.name) });
    }
    let root = root.ok_or(CibError::Xml { line: 1, message: "no root element".into() })?;
    Ok(Document { prolog, root, epilog })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_everything() {
        let src = "<?xml version=\"1.0\"?>\n<!-- c -->\n<cib a=\"1\" b=\"&quot;x&amp;\">\n  <x id=\"1\"/>text &lt; more<![CDATA[raw]]>\n</cib>\n";
        let doc = parse(src).unwrap();
        let out = doc.to_xml();
        assert_eq!(parse(&out).unwrap(), doc);
        assert_eq!(doc.root.attr("b"), Some("\"x&"));
        assert_eq!(doc.root.child("x").unwrap().line, 4);
    }

    #[test]
    fn malformed_reports_line() {
        let err = parse("<cib>\n<a>\n</b>\n</cib>").unwrap_err();
        match err {
            CibError::Xml { line, .. } => assert_eq!(line, 3),
            e => panic!("unexpected {e:?}"),
        }
        assert!(parse("<a></a><b/>").is_err());
        assert!(parse("<a>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<a x='1' x='2'/>").is_err());
    }
}
