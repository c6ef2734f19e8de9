"""The search: a spec becomes an Optuna study in SQL, whose trials workers train and record."""
