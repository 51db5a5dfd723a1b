"""Print templates: one record (with its linked, related and sub-table rows,
as the viewer may see them) through a sandboxed jinja2 template, to HTML and
PDF. See docs/print.md."""

from tangram.engines.printing.service import (
    PRINT_FORMATS,
    PrintOutput,
    check_print_template,
    delete_print_template,
    get_print_template,
    list_print_templates,
    platform_file_opener,
    print_record,
    save_print_template,
    templates_for_viewer,
)

__all__ = ["PRINT_FORMATS", "PrintOutput", "check_print_template", "delete_print_template",
           "get_print_template", "list_print_templates", "platform_file_opener",
           "print_record", "save_print_template", "templates_for_viewer"]
