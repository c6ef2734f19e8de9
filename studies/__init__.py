"""The study specs that ship with dikd, as package data (`dikd specs` lists them)."""
