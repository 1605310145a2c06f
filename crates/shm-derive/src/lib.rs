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

fn expand(input: &DeriveInput) -> Result<proc_macro2::TokenStream, Error> {
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
    if !has_stable_repr(input)? {
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
        predicates.push(syn::parse_quote!(#ty: ::shm::ShmSafe));
    }

    Ok(quote! {
        // SAFETY: the struct has a stable C layout (checked above) and the
        // `where` bounds make the compiler prove that every field is ShmSafe,
        // so the whole is plain data valid at any address in any process.
        unsafe impl #impl_generics ::shm::ShmSafe for #name #ty_generics
        where
            #(#predicates,)*
        {
        }
    })
}

fn has_stable_repr(input: &DeriveInput) -> Result<bool, Error> {
    let mut stable = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") || meta.path.is_ident("transparent") {
                stable = true;
            } else if meta.input.peek(syn::token::Paren) {
                // align(N) / packed(N): consume the argument, keep looking.
                let content;
                syn::parenthesized!(content in meta.input);
                let _: proc_macro2::TokenStream = content.parse()?;
            }
            Ok(())
        })?;
    }
    Ok(stable)
}
