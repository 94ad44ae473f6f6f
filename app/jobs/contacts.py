from ..services import contact_imports


def run_import(import_id: int) -> str:
    return contact_imports.run(import_id)
