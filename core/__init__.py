"""The foundation every other package stands on: settings, the notifier contract and the domain vocabulary.

It imports nothing of HemoWatch's own: the store, the engines, the receivers and the composition root all
look down to it.
"""
