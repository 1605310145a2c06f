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
//! The generated code names the `shm` crate by the path the deriving crate
//! knows it under, read from that crate's manifest: `::shm` for a crate
//! that depends on `procsync-shm` (as `shm`, or under any other name), or
//! `::procsync::shm` for one that depends only on the `procsync` facade.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Error};

/// Implements `shm::ShmSafe` for a `#[repr(C)]` struct whose fields are all
/// `ShmSafe`. See the crate documentation for the rules.
#[proc_macro_derive(ShmSafe)]
pub fn derive_shm_safe(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// The path of the `shm` crate in the crate being compiled.
fn shm_path() -> proc_macro2::TokenStream {
    use proc_macro_crate::{crate_name, FoundCrate};
    let named = |name: &str| {
        let ident = syn::Ident::new(&name.replace('-', "_"), Span::call_site());
        quote!(::#ident)
    };
    // In procsync-shm's own tests, examples and doctests, which know it by
    // its library name `shm` (proc-macro-crate would give the package's).
    if std::env::var("CARGO_PKG_NAME").as_deref() == Ok("procsync-shm") {
        return quote!(::shm);
    }
    match crate_name("procsync-shm") {
        Ok(FoundCrate::Itself) => quote!(::shm),
        Ok(FoundCrate::Name(name)) => named(&name),
        Err(_) => match crate_name("procsync") {
            Ok(FoundCrate::Name(name)) => {
                let facade = named(&name);
                quote!(#facade::shm)
            }
            // Unknown (no manifest to read): the usual name.
            _ => quote!(::shm),
        },
    }
}

fn expand(input: &DeriveInput) -> Result<proc_macro2::TokenStream, Error> {
    let shm = shm_path();
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
