# ruff: noqa: E501 - tree-sitter query patterns read best one per line
"""Tree-sitter queries that find definitions and references, one per language.

Captures: `@def.<kind>` marks a definition node and `@name` its name; `@ref` marks a name
used there (a call, a type, an import; in Python any identifier). A pattern captures either
a definition or references, never both (codemap.py runs the two kinds apart). Written against the grammars bundled in
tree-sitter-language-pack 0.13.0.
"""

from __future__ import annotations

# Python: every identifier in code is a use (calls, attributes, decorators, constants and
# names passed around alike: a dynamic language links by any of them), plus dotted imports
PYTHON = """
(class_definition name: (identifier) @name) @def.class
(function_definition name: (identifier) @name) @def.function
(import_from_statement module_name: (dotted_name) @ref)
(import_statement name: (dotted_name) @ref)
(identifier) @ref
"""

JAVASCRIPT = """
(class_declaration name: (identifier) @name) @def.class
(function_declaration name: (identifier) @name) @def.function
(generator_function_declaration name: (identifier) @name) @def.function
(method_definition name: (property_identifier) @name) @def.method
(variable_declarator name: (identifier) @name value: [(arrow_function) (function_expression)]) @def.function
(call_expression function: [(identifier) @ref (member_expression property: (property_identifier) @ref)])
(new_expression constructor: (identifier) @ref)
(class_heritage (identifier) @ref)
(import_specifier name: (identifier) @ref)
"""

TYPESCRIPT = """
(class_declaration name: (type_identifier) @name) @def.class
(abstract_class_declaration name: (type_identifier) @name) @def.class
(interface_declaration name: (type_identifier) @name) @def.interface
(type_alias_declaration name: (type_identifier) @name) @def.type
(enum_declaration name: (identifier) @name) @def.type
(function_declaration name: (identifier) @name) @def.function
(method_definition name: (property_identifier) @name) @def.method
(method_signature name: (property_identifier) @name) @def.method
(variable_declarator name: (identifier) @name value: [(arrow_function) (function_expression)]) @def.function
(call_expression function: [(identifier) @ref (member_expression property: (property_identifier) @ref)])
(new_expression constructor: (identifier) @ref)
(type_identifier) @ref
(import_specifier name: (identifier) @ref)
"""

GO = """
(function_declaration name: (identifier) @name) @def.function
(method_declaration name: (field_identifier) @name) @def.method
(type_spec name: (type_identifier) @name type: (struct_type)) @def.class
(type_spec name: (type_identifier) @name type: (interface_type)) @def.interface
(call_expression function: [(identifier) @ref (selector_expression field: (field_identifier) @ref)])
(type_identifier) @ref
"""

RUST = """
(struct_item name: (type_identifier) @name) @def.class
(enum_item name: (type_identifier) @name) @def.type
(trait_item name: (type_identifier) @name) @def.interface
(function_item name: (identifier) @name) @def.function
(function_signature_item name: (identifier) @name) @def.function
(mod_item name: (identifier) @name) @def.module
(impl_item type: (type_identifier) @name) @def.impl
(macro_definition name: (identifier) @name) @def.function
(call_expression function: [(identifier) @ref (field_expression field: (field_identifier) @ref) (scoped_identifier name: (identifier) @ref)])
(macro_invocation macro: (identifier) @ref)
(type_identifier) @ref
"""

JAVA = """
(class_declaration name: (identifier) @name) @def.class
(record_declaration name: (identifier) @name) @def.class
(interface_declaration name: (identifier) @name) @def.interface
(enum_declaration name: (identifier) @name) @def.type
(method_declaration name: (identifier) @name) @def.method
(constructor_declaration name: (identifier) @name) @def.method
(method_invocation name: (identifier) @ref)
(object_creation_expression type: (type_identifier) @ref)
(type_identifier) @ref
"""

C = """
(function_definition declarator: (function_declarator declarator: (identifier) @name)) @def.function
(function_definition declarator: (pointer_declarator declarator: (function_declarator declarator: (identifier) @name))) @def.function
(struct_specifier name: (type_identifier) @name body: (field_declaration_list)) @def.class
(enum_specifier name: (type_identifier) @name body: (enumerator_list)) @def.type
(type_definition declarator: (type_identifier) @name) @def.type
(preproc_function_def name: (identifier) @name) @def.function
(call_expression function: [(identifier) @ref (field_expression field: (field_identifier) @ref)])
(type_identifier) @ref
"""

CPP = """
(function_definition declarator: (function_declarator declarator: [(identifier) (field_identifier)] @name)) @def.function
(function_definition declarator: (function_declarator declarator: (qualified_identifier name: (identifier) @name))) @def.method
(function_definition declarator: (pointer_declarator declarator: (function_declarator declarator: (identifier) @name))) @def.function
(function_definition declarator: (reference_declarator (function_declarator declarator: (identifier) @name))) @def.function
(class_specifier name: (type_identifier) @name body: (field_declaration_list)) @def.class
(struct_specifier name: (type_identifier) @name body: (field_declaration_list)) @def.class
(enum_specifier name: (type_identifier) @name body: (enumerator_list)) @def.type
(namespace_definition name: (namespace_identifier) @name) @def.module
(type_definition declarator: (type_identifier) @name) @def.type
(call_expression function: [(identifier) @ref (field_expression field: (field_identifier) @ref) (qualified_identifier name: (identifier) @ref)])
(type_identifier) @ref
"""

CSHARP = """
(class_declaration name: (identifier) @name) @def.class
(record_declaration name: (identifier) @name) @def.class
(struct_declaration name: (identifier) @name) @def.class
(interface_declaration name: (identifier) @name) @def.interface
(enum_declaration name: (identifier) @name) @def.type
(method_declaration name: (identifier) @name) @def.method
(constructor_declaration name: (identifier) @name) @def.method
(property_declaration name: (identifier) @name) @def.method
(namespace_declaration name: [(identifier) (qualified_name)] @name) @def.module
(invocation_expression function: [(identifier) @ref (member_access_expression name: (identifier) @ref)])
(object_creation_expression type: (identifier) @ref)
(base_list (identifier) @ref)
"""

RUBY = """
(class name: [(constant) (scope_resolution)] @name) @def.class
(module name: [(constant) (scope_resolution)] @name) @def.module
(method name: (_) @name) @def.method
(singleton_method name: (_) @name) @def.method
(call method: (identifier) @ref)
(superclass (constant) @ref)
"""

PHP = """
(class_declaration name: (name) @name) @def.class
(interface_declaration name: (name) @name) @def.interface
(trait_declaration name: (name) @name) @def.interface
(function_definition name: (name) @name) @def.function
(method_declaration name: (name) @name) @def.method
(function_call_expression function: (name) @ref)
(member_call_expression name: (name) @ref)
(scoped_call_expression name: (name) @ref)
(object_creation_expression (name) @ref)
(base_clause (name) @ref)
"""

KOTLIN = """
(class_declaration (type_identifier) @name) @def.class
(object_declaration (type_identifier) @name) @def.class
(function_declaration (simple_identifier) @name) @def.function
(call_expression (simple_identifier) @ref)
(call_expression (navigation_expression (navigation_suffix (simple_identifier) @ref)))
(user_type (type_identifier) @ref)
"""
