//! `#[derive(Module)]` for `mlx_rs::nn`: generates the parameter-tree walk of a struct.
//!
//! Use it through `mlx_rs::nn::Module` (the trait and the derive share the name, as
//! serde's do); the generated code names `::mlx_rs`, so this crate is not used directly.
//!
//! Every named field is part of the tree under its own name, visited through
//! `mlx_rs::nn::ModuleItem` (implemented for `Param`, modules, `Option`, `Vec`, `Box`, and
//! as "nothing inside" for plain configuration values such as numbers and `bool`s).
//! Field attributes:
//! - `#[module(skip)]`: not part of the tree (constants, caches, anything else);
//! - `#[module(rename = "name")]`: the key used in the tree and in checkpoints.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitStr};

/// Derives `mlx_rs::nn::Module` for a struct with named fields.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct FieldInfo {
    ident: syn::Ident,
    key: String,
}

fn fields(input: &DeriveInput) -> syn::Result<Vec<FieldInfo>> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Module)] works on structs with named fields",
        ));
    };
    let named = match &data.fields {
        Fields::Named(named) => &named.named,
        Fields::Unit => return Ok(Vec::new()),
        Fields::Unnamed(_) => {
            return Err(syn::Error::new_spanned(
                &input.ident,
                "#[derive(Module)] needs named fields: their names are the parameter keys",
            ))
        }
    };
    let mut out = Vec::new();
    for field in named {
        let ident = field.ident.clone().expect("named field");
        // `r#type` is the key `type`, as Python (and a checkpoint) names it.
        let mut key = syn::ext::IdentExt::unraw(&ident).to_string();
        let mut skip = false;
        for attr in &field.attrs {
            if !attr.path().is_ident("module") {
                continue;
            }
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    skip = true;
                    Ok(())
                } else if meta.path.is_ident("rename") {
                    let lit: LitStr = meta.value()?.parse()?;
                    key = lit.value();
                    if key.is_empty() || key.contains('.') {
                        return Err(meta.error("a key is one non-empty segment without '.'"));
                    }
                    Ok(())
                } else {
                    Err(meta.error("expected `skip` or `rename = \"key\"`"))
                }
            })?;
        }
        if skip {
            continue;
        }
        if out.iter().any(|f: &FieldInfo| f.key == key) {
            // Two fields under one key would make one of them unreachable by name.
            return Err(syn::Error::new_spanned(
                field,
                format!("two fields have the key `{key}`"),
            ));
        }
        out.push(FieldInfo { ident, key });
    }
    Ok(out)
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let fields = fields(input)?;
    let visit = fields.iter().map(|f| {
        let (ident, key) = (&f.ident, &f.key);
        quote! {
            path.push(#key);
            let r = ::mlx_rs::nn::ModuleItem::visit_item(&self.#ident, path, visitor);
            path.pop();
            r?;
        }
    });
    let visit_mut = fields.iter().map(|f| {
        let (ident, key) = (&f.ident, &f.key);
        quote! {
            path.push(#key);
            let r = ::mlx_rs::nn::ModuleItem::visit_item_mut(&mut self.#ident, path, visitor);
            path.pop();
            r?;
        }
    });
    Ok(quote! {
        impl #impl_generics ::mlx_rs::nn::Module for #name #ty_generics #where_clause {
            fn visit(
                &self,
                path: &mut ::mlx_rs::nn::KeyPath,
                visitor: &mut dyn ::mlx_rs::nn::Visitor,
            ) -> ::mlx_rs::Result<()> {
                let _ = (&path, &visitor);
                #(#visit)*
                ::core::result::Result::Ok(())
            }
            fn visit_mut(
                &mut self,
                path: &mut ::mlx_rs::nn::KeyPath,
                visitor: &mut dyn ::mlx_rs::nn::VisitorMut,
            ) -> ::mlx_rs::Result<()> {
                let _ = (&path, &visitor);
                #(#visit_mut)*
                ::core::result::Result::Ok(())
            }
        }
    })
}
