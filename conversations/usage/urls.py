"""URLs of the usage pages (docs/usage.md), mounted at /usage/."""

from django.urls import path

from conversations.usage import views

app_name = "usage"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("export.csv", views.export_csv, name="export"),
    path("summary.json", views.summary_json, name="summary"),
    path("budget.json", views.budget_json, name="budget"),
    path("reconciliation/", views.reconciliation, name="reconciliation"),
]
