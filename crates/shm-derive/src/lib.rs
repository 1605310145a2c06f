//! `#[derive(ShmSafe)]` for the [`shm`](../shm/index.html) crate.
//!
//! Use it through `shm::ShmSafe`, which re-exports it. The derive accepts a
//! struct only when
//!
//! - it is `#[repr(C)]` or `#[repr(transparent)]`, so every process that maps
//!   it agrees on where each field lives, whatever binary it runs; and
//! - every field's type is itself `ShmSafe` (checked by the compiler through
//!   `where` bounds on the generated impl).
//!
//! Enums and unions are rejected: a process could store a discriminant or a
//! bit pattern that another process's code does not expect.
//!
//! The impl also describes the struct's layout (`ShmSafe::describe_layout`):
//! its `repr`, size and alignment, then each field's name, offset and type's
//! own description, so that a named segment is checked by layout, not by
//! the struct's Rust path (see `shm::layout`).
//!
//! The generated code names the `shm` crate `::shm`, the name a crate that
//! depends on `procsync-shm` knows it by. Through the `procsync` facade,
//! `procsync::shm::ShmSafe` is this derive under another entry point that
//! names it `::procsync::shm`. A crate that renamed either dependency says
//! where `shm` is, as serde's `#[serde(crate = "...")]` does:
//!
//! ```text
//! #[derive(ShmSafe)]
//! #[shm(crate = "my_shm")] // for `my_shm = { package = "procsync-shm", ... }`
//! #[repr(C)]
//! struct Point { x: u32, y: u32 }
//! ```
//!
//! (The path is not read from the deriving crate's manifest: that would
//! build a TOML parser into every cold build of every crate that derives.)

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Error};

/// Implements `shm::ShmSafe` for a `#[repr(C)]` struct whose fields are all
/// `ShmSafe`. See the crate documentation for the rules and for
/// `#[shm(crate = "...")]`.
#[proc_macro_derive(ShmSafe, attributes(shm))]
pub fn derive_shm_safe(input: TokenStream) -> TokenStream {
    derive_with_default(input, quote!(::shm))
}

/// `#[derive(ShmSafe)]` as the `procsync` facade re-exports it (under the
/// name `ShmSafe`): the same derive, naming `shm` as `::procsync::shm`.
#[doc(hidden)]
#[proc_macro_derive(ShmSafeThroughProcsync, attributes(shm))]
pub fn derive_shm_safe_through_procsync(input: TokenStream) -> TokenStream {
    derive_with_default(input, quote!(::procsync::shm))
}

fn derive_with_default(input: TokenStream, default_shm: proc_macro2::TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let expanded = shm_path(&input, default_shm).and_then(|shm| expand(&input, &shm));
    match expanded {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// The path of the `shm` crate: `#[shm(crate = "...")]` if the struct
/// has one, otherwise `default_shm`.
fn shm_path(
    input: &DeriveInput,
    default_shm: proc_macro2::TokenStream,
) -> Result<proc_macro2::TokenStream, Error> {
    let mut chosen = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("shm")) {
        attr.parse_nested_meta(|meta| {
            if !meta.path.is_ident("crate") {
                return Err(
                    meta.error("unknown shm attribute: the one there is `crate = \"path\"`")
                );
            }
            let literal: syn::LitStr = meta.value()?.parse()?;
            let path: syn::Path = literal.parse()?;
            chosen = Some(quote!(#path));
            Ok(())
        })?;
    }
    Ok(chosen.unwrap_or(default_shm))
}

fn expand(
    input: &DeriveInput,
    shm: &proc_macro2::TokenStream,
) -> Result<proc_macro2::TokenStream, Error> {
    let fields = match &input.data {
        Data::Struct(data) => &data.fields,
        Data::Enum(_) => {
            return Err(Error::new(
                Span::call_site(),
                "ShmSafe cannot be derived for an enum: another process could store a \
                 discriminant this one does not expect; use a #[repr(C)] struct of integers",
            ))
        }
        Data::Union(_) => {
            return Err(Error::new(
                Span::call_site(),
                "ShmSafe cannot be derived for a union",
            ))
        }
    };
    let repr = repr_items(input)?;
    if !repr.iter().any(|r| r == "C" || r == "transparent") {
        return Err(Error::new_spanned(
            &input.ident,
            "ShmSafe requires #[repr(C)] (or #[repr(transparent)]): processes built from \
             different binaries must agree on the field layout",
        ));
    }

    // Types that are not `ShmSafe` for a reason a newcomer does not guess
    // (they point into this process's memory): said here, with what to use
    // instead, rather than as a bare unmet `ShmSafe` bound.
    let mut unsuitable: Option<Error> = None;
    for field in fields.iter() {
        if let Some(message) = pointer_field_message(&field.ty) {
            let error = Error::new_spanned(&field.ty, message);
            match &mut unsuitable {
                Some(first) => first.combine(error),
                None => unsuitable = Some(error),
            }
        }
    }
    if let Some(error) = unsuitable {
        return Err(error);
    }

    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut predicates = where_clause
        .map(|w| w.predicates.iter().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    for field in fields.iter() {
        let ty = &field.ty;
        predicates.push(syn::parse_quote!(#ty: #shm::ShmSafe));
    }
    let type_name = name.to_string();
    let repr = repr.join(", ");
    let count = fields.len();
    let described = fields.iter().enumerate().map(|(i, field)| {
        let ty = &field.ty;
        let (label, member) = match &field.ident {
            Some(ident) => (ident.to_string(), quote!(#ident)),
            None => {
                let index = syn::Index::from(i);
                (i.to_string(), quote!(#index))
            }
        };
        quote! {
            out.field::<#ty>(#label, ::core::mem::offset_of!(Self, #member));
        }
    });

    Ok(quote! {
        // SAFETY: the struct has a stable C layout (checked above) and the
        // `where` bounds make the compiler prove that every field is ShmSafe,
        // so the whole is plain data valid at any address in any process.
        unsafe impl #impl_generics #shm::ShmSafe for #name #ty_generics
        where
            #(#predicates,)*
        {
            fn describe_layout(out: &mut #shm::layout::LayoutWriter) {
                out.structure(
                    #type_name,
                    #repr,
                    ::core::mem::size_of::<Self>(),
                    ::core::mem::align_of::<Self>(),
                    #count,
                );
                #(#described)*
            }
        }
    })
}

/// Why a field of type `ty` cannot live in shared memory, and what to use
/// instead, when `ty` is (syntactically) a reference, a raw pointer, or a
/// std type owning heap memory (`String`, `Vec<_>`, `Box<_>`, ...), also
/// inside an `Option<_>` or an array. `None` for every other type, which
/// the `ShmSafe` bounds then check as before.
fn pointer_field_message(ty: &syn::Type) -> Option<String> {
    let what = pointer_kind(ty)?;
    let written = tidy(&quote!(#ty).to_string());
    Some(format!(
        "ShmSafe: the field type `{written}` cannot live in shared memory: {what} (another \
         process maps other memory, so it would read garbage); use plain data instead: {}",
        suggestion(ty)
    ))
}

/// A type as the user wrote it, from its tokens' spaced-out text
/// (`Option < String >` becomes `Option<String>`).
fn tidy(tokens: &str) -> String {
    let mut text = tokens.to_string();
    for (spaced, tight) in [
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" :: ", "::"),
        (" ,", ","),
        ("& ", "&"),
    ] {
        text = text.replace(spaced, tight);
    }
    text
}

/// What `ty` (or the type inside its `Option`/array) is, if it points into
/// this process's memory.
fn pointer_kind(ty: &syn::Type) -> Option<&'static str> {
    match ty {
        syn::Type::Reference(_) => Some("a reference is an address in this process"),
        syn::Type::Ptr(_) => Some("a raw pointer is an address in this process"),
        syn::Type::Array(array) => pointer_kind(&array.elem),
        syn::Type::Paren(inner) => pointer_kind(&inner.elem),
        syn::Type::Group(inner) => pointer_kind(&inner.elem),
        syn::Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last()?;
            if !is_std_path(&path.path) {
                return None;
            }
            match last.ident.to_string().as_str() {
                "Option" => single_type_argument(last).and_then(pointer_kind),
                "String" | "OsString" | "CString" | "PathBuf" => {
                    Some("it owns its text on this process's heap")
                }
                "Vec" | "VecDeque" | "Box" | "Rc" | "Arc" | "HashMap" | "BTreeMap" | "HashSet"
                | "BTreeSet" => Some("it owns memory on this process's heap"),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether `path` names a std type: a bare name (`String`) or one under
/// `std`, `alloc` or `core` (`std::string::String`), not a type of the
/// user's own that happens to share the name (`my::Vec`).
fn is_std_path(path: &syn::Path) -> bool {
    let segments = path.segments.len();
    segments == 1
        || path
            .segments
            .first()
            .is_some_and(|s| s.ident == "std" || s.ident == "alloc" || s.ident == "core")
}

/// The one type argument of `Option<T>`, `Vec<T>`, ...
fn single_type_argument(segment: &syn::PathSegment) -> Option<&syn::Type> {
    match &segment.arguments {
        syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
            syn::GenericArgument::Type(ty) => Some(ty),
            _ => None,
        }),
        _ => None,
    }
}

/// What to write instead of `ty` (see [`pointer_kind`]).
fn suggestion(ty: &syn::Type) -> &'static str {
    let name = match ty {
        syn::Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    match name.as_deref() {
        Some("Option") => {
            "for an optional text or list, a fixed-size array with a length field \
             (`[u8; N]` and `len: u32`, length 0 for `None`), or a `bool` flag beside the value"
        }
        Some("String" | "OsString" | "CString" | "PathBuf") => {
            "a fixed-capacity byte array with a length field, such as `name: [u8; 64]` \
             and `name_len: u32` (UTF-8 bytes; check the length fits when writing)"
        }
        Some("Vec" | "VecDeque" | "HashSet" | "BTreeSet") => {
            "a fixed-capacity array with a length field, such as `items: [u64; 32]` and \
             `len: u32`, or a `shm::SharedSlice<T>` of its own for a long list"
        }
        Some("HashMap" | "BTreeMap") => {
            "a fixed-capacity array of (key, value) `#[repr(C)]` structs with a length field"
        }
        Some("Box" | "Rc" | "Arc") => "the value itself as the field (`T` rather than `Box<T>`)",
        _ => {
            "the value itself as the field, or an index into a `[T; N]` or \
             `shm::SharedSlice<T>` that both processes map"
        }
    }
}

/// The items of the struct's `#[repr(...)]` attributes, sorted (`C`,
/// `align(64)`, `packed`, `transparent`, ...).
fn repr_items(input: &DeriveInput) -> Result<Vec<String>, Error> {
    let mut items = Vec::new();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            let path = meta
                .path
                .get_ident()
                .map_or_else(|| "?".to_string(), |i| i.to_string());
            if meta.input.peek(syn::token::Paren) {
                // align(N) / packed(N): keep the argument.
                let content;
                syn::parenthesized!(content in meta.input);
                let arg: proc_macro2::TokenStream = content.parse()?;
                items.push(format!("{path}({arg})"));
            } else {
                items.push(path);
            }
            Ok(())
        })?;
    }
    items.sort();
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message `expand` gives for `input`, which must be refused.
    fn refusal(input: DeriveInput) -> String {
        match expand(&input, &quote!(::shm)) {
            Ok(tokens) => panic!("accepted: {tokens}"),
            Err(errors) => errors
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn a_string_field_suggests_a_byte_array_with_a_length() {
        let message = refusal(syn::parse_quote! {
            #[repr(C)]
            struct Named { id: u32, name: String }
        });
        assert!(
            message.contains("`String` cannot live in shared memory"),
            "{message}"
        );
        assert!(message.contains("[u8; 64]"), "{message}");
        assert!(message.contains("name_len: u32"), "{message}");
    }

    #[test]
    fn every_pointer_field_is_named_with_its_replacement() {
        let message = refusal(syn::parse_quote! {
            #[repr(C)]
            struct Everything<'a> {
                list: Vec<u64>,
                boxed: Box<u32>,
                borrowed: &'a u32,
                maybe: Option<String>,
                full: std::string::String,
                fine: u64,
            }
        });
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), 5, "one error per field: {message}");
        assert!(
            lines[0].contains("`Vec<u64>`") && lines[0].contains("[u64; 32]"),
            "{message}"
        );
        assert!(
            lines[1].contains("`Box<u32>`") && lines[1].contains("`T` rather than `Box<T>`"),
            "{message}"
        );
        assert!(
            lines[2].contains("a reference is an address in this process"),
            "{message}"
        );
        assert!(
            lines[3].contains("`Option<String>`") && lines[3].contains("length 0 for `None`"),
            "{message}"
        );
        assert!(
            lines[4].contains("`std::string::String`") && lines[4].contains("[u8; 64]"),
            "{message}"
        );
    }

    #[test]
    fn plain_fields_and_look_alikes_expand_as_before() {
        let input: DeriveInput = syn::parse_quote! {
            #[repr(C)]
            struct Plain { count: u64, bytes: [u8; 16], mine: my::Vec, maybe: Option<u32> }
        };
        let tokens = expand(&input, &quote!(::shm))
            .expect("no pointer field")
            .to_string();
        assert!(
            tokens.contains("Option < u32 > : :: shm :: ShmSafe"),
            "{tokens}"
        );
        assert!(tokens.contains("my :: Vec : :: shm :: ShmSafe"), "{tokens}");
    }
}
