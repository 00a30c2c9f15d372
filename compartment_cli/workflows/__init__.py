"""The CLI's workflows: steps that return typed results and never print."""
