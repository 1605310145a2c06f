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
//! ```ignore
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
