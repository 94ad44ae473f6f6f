from ..services import leads


def import_recent_leads(integration_id: int, import_id: str):
    return leads.run_import(integration_id, import_id)
